/**
 * McpPool: the worker process's MCP clients, one lazily opened connection per configured server.
 * Owns connection lifecycle (shared connect, eviction of broken connections, reconnect on next use),
 * the per-connection tool-list cache, and the error taxonomy activities use for retry decisions:
 *   McpTransportError  server unreachable / connection lost        retryable
 *   McpTimeoutError    no answer (or progress) within the timeout  retryable
 *   McpToolError       the server rejected the request (JSON-RPC)  not retryable
 * A tool that ran and failed (`isError: true`) is a normal result, not an error.
 */
import { UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { SseError } from '@modelcontextprotocol/sdk/client/sse.js';
import { StreamableHTTPError } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import {
  ErrorCode,
  McpError,
  ToolListChangedNotificationSchema,
  type CallToolResult,
} from '@modelcontextprotocol/sdk/types.js';
import type { McpServerConfig } from '../../config/mcpSchema';
import { SecretResolutionError, type SecretEnv } from '../../config/secrets';
import { filterTools, type McpToolInfo } from '../../domain/toolNames';
import { connectClient, type TransportKind } from './transports';

/** `_meta` key carrying the idempotency key; servers that dedupe can key on it (the bare key is sent too). */
export const IDEMPOTENCY_META_KEY = 'io.mix2api/idempotency-key';

export class McpTransportError extends Error {
  readonly retryable: boolean;
  /** HTTP status when the server answered with one. */
  readonly status: number | undefined;
  constructor(
    readonly server: string,
    message: string,
    opts: { cause?: unknown; status?: number; retryable?: boolean } = {},
  ) {
    super(message, { cause: opts.cause });
    this.name = 'McpTransportError';
    this.status = opts.status;
    // Credentials do not fix themselves between attempts.
    this.retryable = opts.retryable ?? (opts.status !== 401 && opts.status !== 403);
  }
}

export class McpToolError extends Error {
  readonly retryable = false;
  constructor(
    readonly server: string,
    readonly tool: string | undefined,
    /** JSON-RPC error code (e.g. -32602 invalid params) when the server sent one. */
    readonly code: number | undefined,
    message: string,
    opts: { cause?: unknown } = {},
  ) {
    super(message, { cause: opts.cause });
    this.name = 'McpToolError';
  }
}

export class McpTimeoutError extends Error {
  readonly retryable = true;
  constructor(
    readonly server: string,
    readonly tool: string | undefined,
    readonly timeoutMs: number,
    opts: { cause?: unknown } = {},
  ) {
    super(`MCP server ${server}: ${tool ? `tool ${tool}` : 'request'} timed out after ${timeoutMs} ms`, {
      cause: opts.cause,
    });
    this.name = 'McpTimeoutError';
  }
}

export interface McpProgress {
  progress: number;
  total?: number;
  message?: string;
}

export interface CallToolOptions {
  /** Aborting sends notifications/cancelled to the server; the call rejects with `signal.reason`. */
  signal?: AbortSignal;
  /** Longest wait for the result; every progress notification restarts it. */
  timeoutMs: number;
  /** Hard cap regardless of progress. */
  maxTotalTimeoutMs?: number;
  idempotencyKey: string;
  onProgress?: (progress: McpProgress) => void;
}

export interface McpPoolLogEvent {
  server: string;
  level: 'info' | 'warn';
  message: string;
}

export interface McpPoolOptions {
  clientName?: string;
  clientVersion?: string;
  /** Spawn/handshake budget for one connection attempt. */
  connectTimeoutMs?: number;
  /** stdio servers' stderr: kept (last few KB, for error messages, and sent to onLog) or discarded. */
  stderr?: 'pipe' | 'ignore';
  onLog?: (event: McpPoolLogEvent) => void;
}

interface Connection {
  server: string;
  client: Client;
  kind: TransportKind;
  tools?: Promise<McpToolInfo[]>;
}

/** A connection being opened or open; `conn` is set once connected. */
interface Slot {
  promise: Promise<Connection>;
  conn?: Connection;
}

const STDERR_TAIL_CHARS = 4096;
const MAX_TOOL_PAGES = 100;
/** setTimeout fires immediately beyond this. */
const MAX_TIMER_MS = 2 ** 31 - 1;

export class McpPool {
  private readonly configs = new Map<string, McpServerConfig>();
  private readonly slots = new Map<string, Slot>();
  private readonly closedClients = new WeakSet<Client>();
  private readonly pendingCloses = new Set<Promise<void>>();
  private readonly stderrTails = new Map<string, string>();
  private closed = false;

  constructor(
    servers: readonly McpServerConfig[],
    private readonly env: SecretEnv,
    private readonly opts: McpPoolOptions = {},
  ) {
    for (const cfg of servers) {
      if (this.configs.has(cfg.name)) throw new Error(`duplicate MCP server name "${cfg.name}"`);
      this.configs.set(cfg.name, cfg);
    }
  }

  serverNames(): string[] {
    return [...this.configs.keys()];
  }

  config(server: string): McpServerConfig {
    const cfg = this.configs.get(server);
    if (!cfg) throw new McpToolError(server, undefined, undefined, `no MCP server named "${server}" is configured`);
    return cfg;
  }

  /**
   * The server's tools as the model may see them (its `tools.allow` / `tools.deny` applied, tools that require
   * task-based execution left out), cached until the
   * server announces notifications/tools/list_changed or the connection is replaced. Listing has no side
   * effects, so one lost connection is retried once on a fresh one.
   */
  async listTools(server: string): Promise<McpToolInfo[]> {
    const conn = await this.connection(server);
    try {
      return await this.toolsOf(conn);
    } catch (err) {
      // Only a connection that broke under us is worth one more try; a failed connect was just tried.
      if (!(err instanceof McpTransportError) || !err.retryable || this.closed) throw err;
      return this.toolsOf(await this.connection(server));
    }
  }

  /**
   * Calls `tool` as named on the MCP server. Deliberately not limited by `tools.allow`: compensations may call
   * tools the model never sees. Not retried here; a tool call may have side effects, retries are the caller's.
   */
  async callTool(
    server: string,
    tool: string,
    args: Record<string, unknown>,
    opts: CallToolOptions,
  ): Promise<CallToolResult> {
    const { signal } = opts;
    signal?.throwIfAborted();
    const conn = await abortable(this.connection(server), signal);
    try {
      const result = await conn.client.callTool(
        {
          name: tool,
          arguments: args,
          _meta: { idempotencyKey: opts.idempotencyKey, [IDEMPOTENCY_META_KEY]: opts.idempotencyKey },
        },
        undefined,
        {
          ...(signal ? { signal } : {}),
          timeout: timerMs(opts.timeoutMs),
          ...(opts.maxTotalTimeoutMs !== undefined ? { maxTotalTimeout: timerMs(opts.maxTotalTimeoutMs) } : {}),
          resetTimeoutOnProgress: true,
          // Always ask for progress: it is what keeps a long, talkative tool inside its timeout.
          onprogress: (p) =>
            opts.onProgress?.({
              progress: p.progress,
              ...(p.total !== undefined ? { total: p.total } : {}),
              ...(p.message !== undefined ? { message: p.message } : {}),
            }),
        },
      );
      return result as CallToolResult;
    } catch (err) {
      if (signal?.aborted) throw signal.reason;
      throw this.classify(err, conn, `tools/call ${tool}`, tool, opts.timeoutMs);
    }
  }

  /** Closes every connection (stdio children exit) and refuses further use. */
  async closeAll(): Promise<void> {
    this.closed = true;
    const slots = [...this.slots.values()];
    this.slots.clear();
    await Promise.all(
      slots.map(async (slot) => {
        const conn = await slot.promise.catch(() => undefined);
        if (conn) await this.closeClient(conn.client);
      }),
    );
    await Promise.all([...this.pendingCloses]);
  }

  private toolsOf(conn: Connection): Promise<McpToolInfo[]> {
    if (conn.tools) return conn.tools;
    const pending = this.fetchTools(conn);
    conn.tools = pending;
    pending.catch(() => {
      if (conn.tools === pending) conn.tools = undefined;
    });
    return pending;
  }

  private async fetchTools(conn: Connection): Promise<McpToolInfo[]> {
    const cfg = this.config(conn.server);
    const timeoutMs = cfg.timeoutSeconds * 1000;
    const tools: McpToolInfo[] = [];
    let cursor: string | undefined;
    try {
      for (let page = 0; page < MAX_TOOL_PAGES; page++) {
        const res = await conn.client.listTools(cursor ? { cursor } : undefined, { timeout: timerMs(timeoutMs) });
        for (const t of res.tools) {
          // Plain tools/call cannot run these (the SDK refuses), so the model must not be offered them.
          if (t.execution?.taskSupport === 'required') {
            this.log(conn.server, 'info', `hiding tool ${t.name}: it requires task-based execution`);
            continue;
          }
          tools.push({
            name: t.name,
            ...(t.description !== undefined ? { description: t.description } : {}),
            inputSchema: t.inputSchema as Record<string, unknown>,
            ...(t.annotations ? { annotations: t.annotations as Record<string, unknown> } : {}),
          });
        }
        cursor = res.nextCursor;
        if (!cursor) break;
      }
    } catch (err) {
      throw this.classify(err, conn, 'tools/list', undefined, timeoutMs);
    }
    return filterTools(tools, cfg.tools);
  }

  /** The open connection, or the one being opened (concurrent first uses share a single connect). */
  private connection(server: string): Promise<Connection> {
    if (this.closed) return Promise.reject(new McpTransportError(server, 'MCP pool is closed', { retryable: false }));
    const existing = this.slots.get(server);
    if (existing) return existing.promise;
    let cfg: McpServerConfig;
    try {
      cfg = this.config(server);
    } catch (err) {
      return Promise.reject(err);
    }
    const slot: Slot = { promise: this.open(cfg) };
    slot.promise = slot.promise.then(
      async (conn) => {
        if (this.slots.get(server) !== slot || this.closedClients.has(conn.client)) {
          // closeAll ran, or the server hung up, while the handshake was finishing.
          await this.closeClient(conn.client);
          throw new McpTransportError(server, `MCP server ${server} closed the connection right after connecting`, {
            retryable: !this.closed,
          });
        }
        slot.conn = conn;
        return conn;
      },
      (err: unknown) => {
        if (this.slots.get(server) === slot) this.slots.delete(server);
        throw err;
      },
    );
    this.slots.set(server, slot);
    return slot.promise;
  }

  private async open(cfg: McpServerConfig): Promise<Connection> {
    const server = cfg.name;
    const newClient = () => {
      const client = new Client(
        { name: this.opts.clientName ?? 'mix2api', version: this.opts.clientVersion ?? '0.1.0' },
        { capabilities: {} },
      );
      client.onclose = () => this.onClientClosed(server, client);
      client.onerror = (err) => this.onClientError(server, client, err);
      client.setNotificationHandler(ToolListChangedNotificationSchema, () => {
        const conn = this.slots.get(server)?.conn;
        if (conn?.client === client) conn.tools = undefined;
      });
      return client;
    };
    try {
      const { client, kind } = await connectClient(cfg, this.env, newClient, {
        timeoutMs: this.opts.connectTimeoutMs ?? 30_000,
        stderr: this.opts.stderr ?? 'pipe',
        onStderr: (chunk) => this.onStderr(server, chunk),
      });
      if (kind === 'sse' && cfg.transport === 'http') {
        this.log(server, 'info', 'server does not speak Streamable HTTP; connected with the legacy SSE transport');
      }
      return { server, client, kind };
    } catch (err) {
      const tail = this.stderrTails.get(server)?.trim();
      const stderr = cfg.transport === 'stdio' && tail ? `; stderr: ${tail.slice(-1000)}` : '';
      throw new McpTransportError(server, `cannot connect to MCP server ${server}: ${describe(err)}${stderr}`, {
        cause: err,
        ...statusOpt(err),
        // A missing secret stays missing until the worker restarts with a fixed environment.
        ...(err instanceof SecretResolutionError ? { retryable: false } : {}),
      });
    }
  }

  private classify(err: unknown, conn: Connection, what: string, tool: string | undefined, timeoutMs: number): Error {
    const server = conn.server;
    if (err instanceof McpTransportError || err instanceof McpToolError || err instanceof McpTimeoutError) return err;
    if (err instanceof McpError && err.code === ErrorCode.RequestTimeout) {
      return new McpTimeoutError(server, tool, timeoutMs, { cause: err });
    }
    if (isConnectionError(err)) {
      this.evict(conn.client, server, describe(err));
      return new McpTransportError(server, `MCP server ${server}: ${what} failed: ${describe(err)}`, {
        cause: err,
        ...statusOpt(err),
      });
    }
    if (err instanceof McpError) return new McpToolError(server, tool, err.code, `MCP server ${server}: ${err.message}`, { cause: err });
    if (isSchemaError(err)) {
      return new McpToolError(server, tool, ErrorCode.InternalError, `MCP server ${server}: malformed ${what} response: ${describe(err)}`, {
        cause: err,
      });
    }
    // Unknown failures are treated as transient: the caller's retry policy bounds them.
    return new McpTransportError(server, `MCP server ${server}: ${what} failed: ${describe(err)}`, { cause: err });
  }

  private onClientClosed(server: string, client: Client): void {
    const wasDeliberate = this.closedClients.has(client);
    this.closedClients.add(client);
    const slot = this.slots.get(server);
    if (slot?.conn?.client === client) {
      this.slots.delete(server);
      if (!wasDeliberate) this.log(server, 'warn', 'connection closed; the next use reconnects');
    }
  }

  private onClientError(server: string, client: Client, err: Error): void {
    if (isStandaloneStreamRefusal(err)) this.log(server, 'info', `no server-initiated message stream: ${describe(err)}`);
    else if (isConnectionError(err)) this.evict(client, server, describe(err));
    else this.log(server, 'warn', describe(err));
  }

  /** Drops a broken connection so the next use opens a new one; in-flight requests on it fail now. */
  private evict(client: Client, server: string, reason: string): void {
    // A client still connecting is left alone: connectClient sees the same failure (and may fall back to SSE).
    if (this.closedClients.has(client) || this.slots.get(server)?.conn?.client !== client) return;
    this.slots.delete(server);
    this.log(server, 'warn', `connection dropped (${reason}); the next use reconnects`);
    void this.closeClient(client);
  }

  private closeClient(client: Client): Promise<void> {
    this.closedClients.add(client);
    const closing = client.close().catch(() => undefined);
    this.pendingCloses.add(closing);
    void closing.finally(() => this.pendingCloses.delete(closing));
    return closing;
  }

  private onStderr(server: string, chunk: string): void {
    const tail = ((this.stderrTails.get(server) ?? '') + chunk).slice(-STDERR_TAIL_CHARS);
    this.stderrTails.set(server, tail);
    for (const line of chunk.split('\n')) if (line.trim()) this.log(server, 'info', `stderr: ${line}`);
  }

  private log(server: string, level: McpPoolLogEvent['level'], message: string): void {
    this.opts.onLog?.({ server, level, message });
  }
}

const NETWORK_ERROR_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'EPIPE',
  'ENOTFOUND',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EAI_AGAIN',
  'ENOENT',
  'EACCES',
  'ERR_STREAM_DESTROYED',
  'ERR_STREAM_WRITE_AFTER_END',
  'UND_ERR_SOCKET',
  'UND_ERR_CLOSED',
  'UND_ERR_CONNECT_TIMEOUT',
]);

const CONNECTION_MESSAGES =
  /fetch failed|not connected|connection closed|SSE stream disconnected|failed to reconnect|maximum reconnection attempts|error POSTing to endpoint|socket hang up|other side closed|\bterminated\b/i;

/** Errors that mean the connection itself is unusable (as opposed to the server rejecting one request). */
export function isConnectionError(err: unknown): boolean {
  if (err instanceof McpError) return err.code === ErrorCode.ConnectionClosed;
  if (err instanceof StreamableHTTPError || err instanceof SseError || err instanceof UnauthorizedError) return true;
  let current: unknown = err;
  for (let depth = 0; depth < 5 && current instanceof Error; depth++) {
    const code = (current as { code?: unknown }).code;
    if (typeof code === 'string' && NETWORK_ERROR_CODES.has(code)) return true;
    if (CONNECTION_MESSAGES.test(current.message)) return true;
    current = current.cause;
  }
  return false;
}

/**
 * The optional GET stream for server-initiated messages was refused (spec: 405, but servers also answer 404/400...).
 * Requests still work over POST, and a session that is really gone fails the next request, which evicts then.
 * A failed resume of a request's stream arrives as "Failed to reconnect SSE stream" and still evicts.
 */
function isStandaloneStreamRefusal(err: unknown): boolean {
  return err instanceof StreamableHTTPError && err.message.includes('Failed to open SSE stream');
}

function statusOpt(err: unknown): { status?: number } {
  let current: unknown = err;
  for (let depth = 0; depth < 5 && current instanceof Error; depth++) {
    if (current instanceof UnauthorizedError) return { status: 401 };
    if (current instanceof StreamableHTTPError || current instanceof SseError) {
      const code = current.code;
      if (typeof code === 'number' && code >= 100) return { status: code };
    }
    current = current.cause;
  }
  return {};
}

function isSchemaError(err: unknown): boolean {
  return err instanceof Error && (err.name === 'ZodError' || err.name === '$ZodError');
}

function describe(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const cause = err.cause instanceof Error && !err.message.includes(err.cause.message) ? ` (${err.cause.message})` : '';
  return `${err.message}${cause}`;
}

function timerMs(ms: number): number {
  return Math.max(1, Math.min(Math.floor(ms), MAX_TIMER_MS));
}

/** Rejects with `signal.reason` as soon as the signal aborts; the underlying promise keeps running. */
function abortable<T>(promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return promise;
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    if (signal.aborted) return onAbort();
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (err: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(err);
      },
    );
  });
}
