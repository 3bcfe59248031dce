/**
 * The two real edge gateways, as child processes in front of a mix2api: one-api (built by
 * `scripts/bootstrap-edge.mjs` from the Go module proxy) and the LiteLLM proxy (its venv). Each
 * comes with the real `openai` client pointed at it and a reader of what the gateway billed:
 * one-api's consume log (its admin API), LiteLLM's success/failure callback (a JSONL file).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import OpenAI from 'openai';
import { stringify } from 'yaml';
import { freePort } from '../../support/mcpServers';

const root = resolve(__dirname, '..', '..', '..');
const ONE_API = join(root, '.tools', 'one-api', 'one-api');
const LITELLM = join(root, '.tools', 'litellm', 'venv', 'bin', 'litellm');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** One billed call, as the gateway recorded it. */
export interface Bill {
  /** LiteLLM: the callback that fired; one-api logs consumption only, always `success`. */
  outcome: 'success' | 'failure';
  promptTokens: number;
  completionTokens: number;
  /** LiteLLM only: the reasoning tokens it counted. */
  reasoningTokens?: number;
  raw: Record<string, unknown>;
}

export interface Gateway {
  name: 'one-api' | 'litellm';
  /** The base URL an OpenAI client uses (`…/v1`). */
  baseURL: string;
  clientKey: string;
  openai: OpenAI;
  /** Everything billed so far, oldest first. */
  bills(): Promise<Bill[]>;
  /**
   * Waits until the calls billed after the first `count` satisfy `enough` (by default: there is
   * one; gateways write them after the answer) and returns those.
   */
  billsAfter(count: number, enough?: (fresh: Bill[]) => boolean): Promise<Bill[]>;
  output: string[];
  stop(): Promise<void>;
}

export interface GatewayOptions {
  /** A fresh folder for the gateway's database, config and logs. */
  dir: string;
  /** mix2api's base URL (`http://127.0.0.1:<port>`). */
  mix2apiUrl: string;
  /** The key the gateway sends to mix2api. */
  channelKey: string;
  /** Model names the gateway routes to mix2api. */
  models: string[];
}

function spawnLogged(cmd: string, args: string[], cwd: string, env: Record<string, string | undefined>, output: string[]): ChildProcess {
  const child = spawn(cmd, args, { cwd, env: env as NodeJS.ProcessEnv, stdio: ['ignore', 'pipe', 'pipe'] });
  for (const s of [child.stdout, child.stderr]) {
    s?.setEncoding('utf8');
    s?.on('data', (d: string) => output.push(...d.split('\n').filter(Boolean)));
  }
  return child;
}

async function untilReady(url: string, child: ChildProcess, output: string[], timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`gateway exited (${child.exitCode}):\n${output.slice(-30).join('\n')}`);
    try {
      const r = await fetch(url, { signal: AbortSignal.timeout(2000) });
      await r.body?.cancel();
      if (r.ok) return;
    } catch {
      // not listening yet
    }
    await sleep(250);
  }
  throw new Error(`gateway not ready at ${url} after ${timeoutMs} ms:\n${output.slice(-30).join('\n')}`);
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  const t = setTimeout(() => child.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(t);
}

const client = (baseURL: string, apiKey: string) => new OpenAI({ baseURL, apiKey, maxRetries: 0, timeout: 90_000 });

function withBillsAfter(bills: () => Promise<Bill[]>) {
  return async (count: number, enough = (fresh: Bill[]) => fresh.length > 0): Promise<Bill[]> => {
    const deadline = Date.now() + 15_000;
    for (;;) {
      const fresh = (await bills()).slice(count);
      if (enough(fresh)) return fresh;
      if (Date.now() > deadline) throw new Error(`the bills after the first ${count} are not there within 15 s: ${JSON.stringify(fresh)}`);
      await sleep(200);
    }
  };
}

// Tokens without '-': one-api reads the part after the first '-' as a channel id.
const ROOT_ACCESS_TOKEN = 'edgeroot0123456789';
const USER_TOKEN = 'edgeuser0123456789abcdef';

/**
 * one-api with OpenAI channels to mix2api (`channels`, default 1: one-api retries only on another
 * channel than the one that failed, so retries need two, as with two mix2api replicas). `env` adds
 * one-api settings (`ENFORCE_INCLUDE_USAGE`, `RELAY_TIMEOUT`); `options` are its admin options
 * (`RetryTimes`).
 */
export async function startOneApi(o: GatewayOptions & { channels?: number; env?: Record<string, string>; options?: Record<string, string> }): Promise<Gateway> {
  mkdirSync(o.dir, { recursive: true });
  const port = await freePort();
  const output: string[] = [];
  const env = {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    PORT: String(port),
    SQLITE_PATH: join(o.dir, 'one-api.db'),
    SESSION_SECRET: 'edge-suite-session-secret',
    INITIAL_ROOT_ACCESS_TOKEN: ROOT_ACCESS_TOKEN,
    INITIAL_ROOT_TOKEN: USER_TOKEN,
    TIKTOKEN_CACHE_DIR: join(root, '.tools', 'one-api', 'tiktoken'),
    GIN_MODE: 'release',
    ...o.env,
  };
  // It reads ./.env, so it runs in its own folder.
  const child = spawnLogged(ONE_API, ['--log-dir', join(o.dir, 'logs')], o.dir, env, output);
  const base = `http://127.0.0.1:${port}`;
  try {
    await untilReady(`${base}/api/status`, child, output, 30_000);
    const admin = async (method: string, path: string, body?: unknown) => {
      const r = await fetch(`${base}${path}`, {
        method,
        headers: { authorization: `Bearer ${ROOT_ACCESS_TOKEN}`, 'content-type': 'application/json' },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      const j = (await r.json()) as { success: boolean; message?: string; data?: unknown };
      if (!j.success) throw new Error(`one-api ${method} ${path}: ${j.message}`);
      return j.data;
    };
    for (let i = 1; i <= (o.channels ?? 1); i++)
      await admin('POST', '/api/channel/', {
        type: 1, // OpenAI
        name: `mix2api-${i}`,
        key: o.channelKey,
        base_url: o.mix2apiUrl,
        models: o.models.join(','),
        group: 'default',
        model_mapping: '',
        config: '{}',
      });
    for (const [key, value] of Object.entries(o.options ?? {})) await admin('PUT', '/api/option/', { key, value });
    const bills = async (): Promise<Bill[]> => {
      // Newest first, a page of ITEMS_PER_PAGE (10) at a time; type 2 = consumption.
      const rows: Array<Record<string, unknown>> = [];
      for (let p = 0; ; p++) {
        const page = ((await admin('GET', `/api/log/?p=${p}&type=2`)) as Array<Record<string, unknown>> | null) ?? [];
        rows.push(...page);
        if (page.length === 0 || p >= 100) break;
      }
      // A log written while the pages are read shifts them: a row seen on page p comes again on
      // page p + 1. One row per id, oldest first (the newest may wait for the next read).
      const byId = new Map(rows.map((r) => [Number(r.id), r]));
      return [...byId.entries()].sort(([a], [b]) => a - b).map(([, r]) => ({ outcome: 'success', promptTokens: Number(r.prompt_tokens), completionTokens: Number(r.completion_tokens), raw: r }));
    };
    const baseURL = `${base}/v1`;
    return {
      name: 'one-api',
      baseURL,
      clientKey: `sk-${USER_TOKEN}`,
      openai: client(baseURL, `sk-${USER_TOKEN}`),
      bills,
      billsAfter: withBillsAfter(bills),
      output,
      stop: () => stopChild(child),
    };
  } catch (e) {
    await stopChild(child);
    throw e;
  }
}

export const LITELLM_MASTER_KEY = 'sk-edge-master';

// Everything LiteLLM would fetch from the internet at start, read from the package instead.
const LITELLM_OFFLINE = {
  LITELLM_LOCAL_MODEL_COST_MAP: 'True',
  LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS: 'True',
  LITELLM_LOCAL_BLOG_POSTS: 'True',
  LITELLM_LOCAL_POLICY_TEMPLATES: 'True',
  LITELLM_LOCAL_AUTOROUTER_PRESETS: 'True',
  LITELLM_MODE: 'PRODUCTION',
  LITELLM_TELEMETRY: 'False',
  NO_DOCS: 'True',
};

/** Token prices LiteLLM bills with (any: the suite checks the tokens, and that a cost was computed). */
export const LITELLM_PRICES = { input_cost_per_token: 0.000001, output_cost_per_token: 0.000002 };

/** The LiteLLM proxy with mix2api as an `openai/` deployment per model; its router retries as shipped. */
export async function startLiteLLM(o: GatewayOptions & { routerSettings?: Record<string, unknown> }): Promise<Gateway> {
  mkdirSync(o.dir, { recursive: true });
  const port = await freePort();
  const output: string[] = [];
  const usageLog = join(o.dir, 'usage.jsonl');
  writeFileSync(usageLog, '');
  copyFileSync(join(__dirname, 'usage_logger.py'), join(o.dir, 'usage_logger.py'));
  const config = {
    model_list: o.models.map((m) => ({
      model_name: m,
      litellm_params: { model: `openai/${m}`, api_base: `${o.mix2apiUrl}/v1`, api_key: o.channelKey, ...LITELLM_PRICES },
    })),
    litellm_settings: { callbacks: 'usage_logger.usage_logger_instance' },
    general_settings: { master_key: LITELLM_MASTER_KEY },
    ...(o.routerSettings ? { router_settings: o.routerSettings } : {}),
  };
  const configFile = join(o.dir, 'config.yaml');
  writeFileSync(configFile, stringify(config));
  const env = { PATH: process.env.PATH, HOME: process.env.HOME, MIX2API_EDGE_USAGE_LOG: usageLog, PYTHONUNBUFFERED: '1', ...LITELLM_OFFLINE };
  const child = spawnLogged(LITELLM, ['--config', configFile, '--host', '127.0.0.1', '--port', String(port)], o.dir, env, output);
  const base = `http://127.0.0.1:${port}`;
  try {
    await untilReady(`${base}/health/liveliness`, child, output, 90_000);
  } catch (e) {
    await stopChild(child);
    throw e;
  }
  const bills = async (): Promise<Bill[]> =>
    readFileSync(usageLog, 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => {
        const raw = JSON.parse(l) as Record<string, unknown> & { usage?: { prompt_tokens?: number; completion_tokens?: number; completion_tokens_details?: { reasoning_tokens?: number } | null } | null };
        return {
          outcome: raw.outcome as Bill['outcome'],
          promptTokens: raw.usage?.prompt_tokens ?? Number(raw.prompt_tokens ?? 0),
          completionTokens: raw.usage?.completion_tokens ?? Number(raw.completion_tokens ?? 0),
          reasoningTokens: raw.usage?.completion_tokens_details?.reasoning_tokens ?? undefined,
          raw,
        };
      });
  const baseURL = `${base}/v1`;
  return {
    name: 'litellm',
    baseURL,
    clientKey: LITELLM_MASTER_KEY,
    openai: client(baseURL, LITELLM_MASTER_KEY),
    bills,
    billsAfter: withBillsAfter(bills),
    output,
    stop: () => stopChild(child),
  };
}
