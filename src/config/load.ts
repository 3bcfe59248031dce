/**
 * Reads the config once at boot: YAML file (MIX2API_CONFIG, default ./mix2api.yaml), env overrides,
 * cross-references, secrets. The result is frozen; nothing else in the code reads process.env.
 */
import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import type { EncryptionKey } from '../connectors/payloadCodec';
import YAML from 'yaml';
import type { z } from 'zod';
import { ConfigFileSchema, type ConfigFile } from './schema';
import { resolveSecret } from './secrets';

export const DEMO_MODEL = 'mix2api-demo';

export interface Config extends ConfigFile {
  /** Where the file came from, or null when running on env/defaults only. */
  source: string | null;
  /** No upstream configured anywhere: `start` serves the built-in demo model. */
  demo: boolean;
  /** No `models` configured: any model id goes to the first upstream unchanged. */
  passthroughModels: boolean;
  env: Readonly<Record<string, string | undefined>>;
  /** OpenTelemetry trace export, from the standard `OTEL_*` variables (off without an OTLP endpoint). */
  tracing: TracingConfig;
}

export interface TracingConfig {
  enabled: boolean;
  serviceName: string;
  /** OTLP over HTTP: `http/protobuf` (the OpenTelemetry default) or `http/json`. */
  protocol: 'http/protobuf' | 'http/json';
}

/** `OTEL_EXPORTER_OTLP_ENDPOINT` (or its traces-only twin) turns export on; `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none` keep it off. */
function tracingFrom(env: NodeJS.ProcessEnv, source: string | null): TracingConfig {
  const endpoint = env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT || env.OTEL_EXPORTER_OTLP_ENDPOINT;
  const off = env.OTEL_SDK_DISABLED === 'true' || (env.OTEL_TRACES_EXPORTER ?? 'otlp').split(',').every((e) => e.trim() !== 'otlp');
  const protocol = env.OTEL_EXPORTER_OTLP_TRACES_PROTOCOL || env.OTEL_EXPORTER_OTLP_PROTOCOL || 'http/protobuf';
  if (endpoint && !off && protocol !== 'http/protobuf' && protocol !== 'http/json')
    throw new ConfigError([`OTEL_EXPORTER_OTLP_PROTOCOL: "${protocol}" is not supported; use http/protobuf (the default) or http/json (OTLP/gRPC is not bundled)`], source);
  return { enabled: Boolean(endpoint) && !off, serviceName: env.OTEL_SERVICE_NAME || 'mix2api', protocol: protocol as TracingConfig['protocol'] };
}

export class ConfigError extends Error {
  constructor(readonly problems: string[], source: string | null) {
    super(`invalid config${source ? ` (${source})` : ''}:\n  ${problems.join('\n  ')}`);
    this.name = 'ConfigError';
  }
}

/** `upstreams[0].baseURL: Invalid URL` — the path first, so a user finds the line. */
export function formatIssues(issues: z.core.$ZodIssue[]): string[] {
  return issues.map((i) => {
    const path = i.path
      .map((p, n) => (typeof p === 'number' ? `[${p}]` : `${n === 0 ? '' : '.'}${String(p)}`))
      .join('');
    return `${path || '(root)'}: ${i.message}`;
  });
}

function readRaw(path: string | null): unknown {
  if (!path) return {};
  const text = readFileSync(path, 'utf8');
  const doc = YAML.parseDocument(text);
  if (doc.errors.length > 0) {
    throw new ConfigError(doc.errors.map((e) => `yaml: ${e.message}`), path);
  }
  return doc.toJS() ?? {};
}

function applyEnv(raw: Record<string, unknown>, env: NodeJS.ProcessEnv): Record<string, unknown> {
  const out: Record<string, unknown> = { ...raw };
  const section = (k: string): Record<string, unknown> => {
    const v = out[k];
    const copy = v && typeof v === 'object' && !Array.isArray(v) ? { ...(v as Record<string, unknown>) } : {};
    out[k] = copy;
    return copy;
  };
  if (env.PORT) section('server').port = Number(env.PORT);
  if (env.HOST) section('server').host = env.HOST;
  if (env.TEMPORAL_ADDRESS) section('temporal').address = env.TEMPORAL_ADDRESS;
  if (env.TEMPORAL_NAMESPACE) section('temporal').namespace = env.TEMPORAL_NAMESPACE;
  if (env.TEMPORAL_TASK_QUEUE) section('temporal').taskQueue = env.TEMPORAL_TASK_QUEUE;
  if (env.TEMPORAL_API_KEY) section('temporal').apiKey = env.TEMPORAL_API_KEY;
  if (env.METRICS_PORT) section('metrics').port = Number(env.METRICS_PORT);
  if (env.METRICS_HOST) section('metrics').host = env.METRICS_HOST;
  if (env.LOG_LEVEL) section('logging').level = env.LOG_LEVEL;
  if (env.LOG_FORMAT) section('logging').format = env.LOG_FORMAT;
  const upstreams = Array.isArray(out.upstreams) ? out.upstreams : [];
  if (upstreams.length === 0 && env.OPENAI_BASE_URL) {
    out.upstreams = [{ name: 'openai', baseURL: env.OPENAI_BASE_URL, ...(env.OPENAI_API_KEY ? { apiKey: 'env:OPENAI_API_KEY' } : {}) }];
  }
  if (env.MIX2API_ENCRYPTION_KEY) {
    // The environment's key is the current one; the file's stay, to decrypt what they wrote.
    const e = section('encryption');
    const id = env.MIX2API_ENCRYPTION_KEY_ID ?? 'env';
    const keys = (Array.isArray(e.keys) ? e.keys : []).filter((k: { id?: unknown }) => k?.id !== id);
    e.keys = [{ id, key: 'env:MIX2API_ENCRYPTION_KEY' }, ...keys];
  }
  if (env.MIX2API_API_KEY) {
    const server = section('server');
    server.apiKeys = [...(Array.isArray(server.apiKeys) ? server.apiKeys : []), { name: 'env', key: 'env:MIX2API_API_KEY' }];
  }
  return out;
}

function resolveEnvRef(value: string, env: NodeJS.ProcessEnv, where: string): string {
  try {
    return resolveSecret(value, env, where);
  } catch (e) {
    throw new ConfigError([e instanceof Error ? e.message : String(e)], null);
  }
}

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || host.startsWith('127.');
}

function crossCheck(cfg: ConfigFile): string[] {
  const problems: string[] = [];
  const upstreams = new Set(cfg.upstreams.map((u) => u.name));
  if (upstreams.size !== cfg.upstreams.length) problems.push('upstreams: names must be unique');
  const ids = new Set<string>();
  const servers = new Set(cfg.mcpServers.map((s) => s.name));
  if (servers.size !== cfg.mcpServers.length) problems.push('mcpServers: names must be unique');
  cfg.server.apiKeys.forEach((k, i) =>
    k.gatewayServers?.forEach((name, j) => {
      if (!servers.has(name)) problems.push(`server.apiKeys[${i}].gatewayServers[${j}]: no mcpServers entry named "${name}"`);
    }),
  );
  cfg.models.forEach((m, i) => {
    if (!upstreams.has(m.upstream)) problems.push(`models[${i}].upstream: no upstream named "${m.upstream}"`);
    m.fallbacks.forEach((f, j) => {
      if (!upstreams.has(f.upstream)) problems.push(`models[${i}].fallbacks[${j}].upstream: no upstream named "${f.upstream}"`);
    });
    if (ids.has(m.id)) problems.push(`models[${i}].id: duplicate model id "${m.id}"`);
    m.mcpServers.forEach((name, j) => {
      if (!servers.has(name)) problems.push(`models[${i}].mcpServers[${j}]: no mcpServers entry named "${name}"`);
    });
    ids.add(m.id);
  });
  return problems;
}

export function parseConfig(raw: unknown, env: NodeJS.ProcessEnv, source: string | null = null): Config {
  const withEnv = applyEnv((raw && typeof raw === 'object' ? raw : {}) as Record<string, unknown>, env);
  const parsed = ConfigFileSchema.safeParse(withEnv);
  if (!parsed.success) throw new ConfigError(formatIssues(parsed.error.issues), source);
  const cfg = parsed.data;
  const problems = crossCheck(cfg);
  const host = cfg.server.host ?? (cfg.server.apiKeys.length > 0 ? '0.0.0.0' : '127.0.0.1');
  if (cfg.server.apiKeys.length === 0 && !isLoopback(host) && !cfg.server.allowUnauthenticated) {
    problems.push(`server.host: ${host} without server.apiKeys would be an open proxy; add a key (or MIX2API_API_KEY), or set server.allowUnauthenticated: true`);
  }
  if (problems.length > 0) throw new ConfigError(problems, source);
  cfg.upstreams.forEach((u, i) => {
    if (u.apiKey) u.apiKey = resolveEnvRef(u.apiKey, env, `upstreams[${i}].apiKey`);
    for (const [h, v] of Object.entries(u.headers)) u.headers[h] = resolveEnvRef(v, env, `upstreams[${i}].headers.${h}`);
  });
  cfg.server.apiKeys.forEach((k, i) => {
    k.key = resolveEnvRef(k.key, env, `server.apiKeys[${i}].key`);
  });
  // MCP secrets too, so a missing variable fails at boot (and in check-config), not at first use.
  cfg.mcpServers.forEach((m, i) => {
    for (const [k, v] of Object.entries(m.env ?? {})) m.env![k] = resolveEnvRef(v, env, `mcpServers[${i}].env.${k}`);
    for (const [k, v] of Object.entries(m.headers ?? {})) m.headers![k] = resolveEnvRef(v, env, `mcpServers[${i}].headers.${k}`);
  });
  cfg.encryption.keys.forEach((k, i) => {
    k.key = resolveEnvRef(k.key, env, `encryption.keys[${i}].key`);
    if (Buffer.from(k.key, 'base64').length !== 32 || !/^[A-Za-z0-9+/]+={0,2}$/.test(k.key.trim()))
      throw new ConfigError([`encryption.keys[${i}].key: must be 32 bytes, base64-encoded (e.g. \`openssl rand -base64 32\`)`], source);
  });
  const demo = cfg.upstreams.length === 0;
  cfg.temporal.searchAttributes ??= cfg.temporal.address === 'embedded';
  return deepFreeze({
    ...cfg,
    source,
    demo,
    passthroughModels: !demo && cfg.models.length === 0,
    env: { ...env },
    tracing: tracingFrom(env, source),
  });
}

export function configPath(env: NodeJS.ProcessEnv, cwd = process.cwd()): string | null {
  if (env.MIX2API_CONFIG) return resolve(cwd, env.MIX2API_CONFIG);
  const def = resolve(cwd, 'mix2api.yaml');
  return existsSync(def) ? def : null;
}

/** The one place the process environment is read. `adjust` may add to the raw file (the demo). */
export function loadConfig(env: NodeJS.ProcessEnv = process.env, adjust?: (raw: Record<string, unknown>) => Record<string, unknown>): Config {
  const path = configPath(env);
  if (path && !existsSync(path)) throw new ConfigError([`config file not found: ${path}`], path);
  const raw = (readRaw(path) ?? {}) as Record<string, unknown>;
  return parseConfig(adjust ? adjust(raw) : raw, env, path);
}

function deepFreeze<T>(o: T): T {
  if (o && typeof o === 'object' && !Object.isFrozen(o)) {
    Object.freeze(o);
    for (const v of Object.values(o)) deepFreeze(v);
  }
  return o;
}

/** The configured payload-encryption keys, current first. */
export function encryptionKeys(config: Config): EncryptionKey[] {
  return config.encryption.keys.map((k) => ({ id: k.id, key: Buffer.from(k.key, 'base64') }));
}
