/**
 * Builds and connects the SDK transport for one configured MCP server: stdio child processes with a
 * minimal environment, Streamable HTTP, and legacy HTTP+SSE (also as the fallback for old `http` servers).
 */
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { SSEClientTransport } from '@modelcontextprotocol/sdk/client/sse.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { StreamableHTTPClientTransport, StreamableHTTPError } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { Transport } from '@modelcontextprotocol/sdk/shared/transport.js';
import type { McpServerConfig } from '../../config/mcpSchema';
import { resolveSecretMap, type SecretEnv } from '../../config/secrets';
import { traceHeaders } from '../../telemetry/tracing';

export type TransportKind = 'stdio' | 'streamableHttp' | 'sse';

export interface TransportOptions {
  /** stdio only. 'pipe' (default) hands the child's stderr to `onStderr`; it is always drained. */
  stderr?: 'pipe' | 'ignore';
  onStderr?: (chunk: string) => void;
  /** `http` servers only: force the legacy SSE protocol (used by the fallback). */
  httpProtocol?: 'streamableHttp' | 'sse';
}

export interface ConnectedClient {
  client: Client;
  transport: Transport;
  kind: TransportKind;
}

export class McpConnectTimeoutError extends Error {
  constructor(
    readonly server: string,
    readonly timeoutMs: number,
  ) {
    super(`MCP server ${server} did not finish connecting within ${timeoutMs} ms`);
    this.name = 'McpConnectTimeoutError';
  }
}

/** Only what a server process needs to find binaries and its home; secrets come from `cfg.env` explicitly. */
const INHERITED_VARS = ['PATH', 'HOME'] as const;

/**
 * The stdio child's environment: PATH and HOME from `env`, then `cfg.env` with `env:VAR` resolved.
 * (The SDK itself also adds LOGNAME, SHELL, TERM and USER from process.env underneath.)
 */
export function stdioEnv(cfg: McpServerConfig, env: SecretEnv): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of INHERITED_VARS) {
    const value = env[name];
    if (value !== undefined) out[name] = value;
  }
  return { ...out, ...resolveSecretMap(cfg.env, env, `mcpServers[${cfg.name}].env`) };
}

export function createTransport(cfg: McpServerConfig, env: SecretEnv, opts: TransportOptions = {}): Transport {
  switch (cfg.transport) {
    case 'stdio':
      return stdioTransport(cfg, env, opts);
    case 'http':
      return opts.httpProtocol === 'sse' ? sseTransport(cfg, env) : streamableTransport(cfg, env);
    case 'sse':
      return sseTransport(cfg, env);
  }
}

export function transportKind(cfg: McpServerConfig, opts: TransportOptions = {}): TransportKind {
  if (cfg.transport === 'stdio') return 'stdio';
  return cfg.transport === 'sse' || opts.httpProtocol === 'sse' ? 'sse' : 'streamableHttp';
}

/**
 * A Streamable HTTP POST refused this way means a server that predates it (2024-11-05 HTTP+SSE):
 * the spec's backwards-compatibility rule is to retry the same URL as an SSE endpoint.
 */
export function isLegacySseFallbackError(err: unknown): boolean {
  return err instanceof StreamableHTTPError && [400, 404, 405, 406].includes(err.code ?? 0);
}

/**
 * Connects a fresh client (from `newClient`) to the server, falling back from Streamable HTTP to SSE for
 * `http` servers that refuse it. Whatever fails or times out is closed before the error is thrown.
 */
export async function connectClient(
  cfg: McpServerConfig,
  env: SecretEnv,
  newClient: () => Client,
  opts: TransportOptions & { timeoutMs: number },
): Promise<ConnectedClient> {
  const first = await attempt(cfg, env, newClient, opts);
  if (first.ok) return first.connected;
  if (cfg.transport !== 'http' || opts.httpProtocol === 'sse' || !isLegacySseFallbackError(first.error)) {
    throw first.error;
  }
  const second = await attempt(cfg, env, newClient, { ...opts, httpProtocol: 'sse' });
  if (second.ok) return second.connected;
  const message = (e: unknown) => (e instanceof Error ? e.message : String(e));
  throw new Error(
    `Streamable HTTP was refused (${message(first.error)}) and the legacy SSE fallback failed too: ${message(second.error)}`,
    { cause: second.error },
  );
}

type Attempt = { ok: true; connected: ConnectedClient } | { ok: false; error: unknown };

async function attempt(
  cfg: McpServerConfig,
  env: SecretEnv,
  newClient: () => Client,
  opts: TransportOptions & { timeoutMs: number },
): Promise<Attempt> {
  let timer: NodeJS.Timeout | undefined;
  let transport: Transport | undefined;
  const client = newClient();
  try {
    transport = createTransport(cfg, env, opts);
    const timedOut = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new McpConnectTimeoutError(cfg.name, opts.timeoutMs)), opts.timeoutMs);
    });
    // The race covers transport.start() too (an SSE endpoint event that never comes), not just `initialize`.
    await Promise.race([client.connect(transport, { timeout: opts.timeoutMs }), timedOut]);
    return { ok: true, connected: { client, transport, kind: transportKind(cfg, opts) } };
  } catch (error) {
    await client.close().catch(() => undefined);
    await transport?.close().catch(() => undefined);
    return { ok: false, error };
  } finally {
    clearTimeout(timer);
  }
}

function stdioTransport(cfg: McpServerConfig, env: SecretEnv, opts: TransportOptions): Transport {
  if (!cfg.command) throw new Error(`mcpServers[${cfg.name}]: stdio transport needs a command`);
  const stderr = opts.stderr ?? 'pipe';
  const transport = new StdioClientTransport({
    command: cfg.command,
    args: [...cfg.args],
    env: stdioEnv(cfg, env),
    ...(cfg.cwd ? { cwd: cfg.cwd } : {}),
    stderr,
  });
  // Always drain a piped stderr: a full pipe would block a chatty server's writes and hang it.
  if (stderr === 'pipe') {
    transport.stderr?.on('data', (chunk: Buffer | string) => opts.onStderr?.(chunk.toString()));
  }
  return transport;
}

function httpUrl(cfg: McpServerConfig): URL {
  if (!cfg.url) throw new Error(`mcpServers[${cfg.name}]: ${cfg.transport} transport needs a url`);
  return new URL(cfg.url);
}

function requestInit(cfg: McpServerConfig, env: SecretEnv): RequestInit {
  return { headers: resolveSecretMap(cfg.headers, env, `mcpServers[${cfg.name}].headers`) };
}

/** fetch, plus the W3C trace context of the call being made (the tool call's span, when traced). */
const tracedFetch: typeof fetch = (input, init) => {
  const extra = traceHeaders();
  if (Object.keys(extra).length === 0) return fetch(input, init);
  const headers = new Headers(init?.headers);
  for (const [k, v] of Object.entries(extra)) headers.set(k, v);
  return fetch(input, { ...init, headers });
};

function streamableTransport(cfg: McpServerConfig, env: SecretEnv): Transport {
  return new StreamableHTTPClientTransport(httpUrl(cfg), { requestInit: requestInit(cfg, env), fetch: tracedFetch });
}

function sseTransport(cfg: McpServerConfig, env: SecretEnv): Transport {
  return new SSEClientTransport(httpUrl(cfg), { requestInit: requestInit(cfg, env), fetch: tracedFetch });
}
