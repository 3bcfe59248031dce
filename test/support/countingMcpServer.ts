/**
 * An MCP server (Streamable HTTP on 127.0.0.1, one SDK session per client) with one tool,
 * `count_slowly {label}`, whose side effect is counted: it works ~3 s, then records one effect.
 * It dedupes by the idempotency key mix2api sends in `_meta`: a call with a key already in flight
 * waits for that one, a call with a finished key gets the stored result. It lives in the test
 * process, so it survives a mix2api that is killed mid-call.
 */
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';
import { startMcpHttp } from './mcpHttp';

export const COUNT_TOOL = 'count_slowly';

export interface CountingMcpServer {
  /** The Streamable HTTP endpoint (`…/mcp`). */
  url: string;
  /** Side effects performed, per idempotency key. */
  sideEffects: Map<string, number>;
  /** tools/call requests received, per idempotency key (retries and duplicates included). */
  callsReceived: Map<string, number>;
  /** When each of those calls arrived (`Date.now()`), per key. */
  callTimes: Map<string, number[]>;
  /** The label each key was first called with. */
  labelOf: Map<string, string>;
  /** Keys whose work is running right now. */
  inFlight: Set<string>;
  /** Every `_meta` seen on a tools/call. */
  metas: Array<Record<string, unknown>>;
  /** The W3C `traceparent` header of each tools/call request (undefined when none was sent). */
  traceparents: Array<string | undefined>;
  /** Adds a tool (answering `<name> ok`) to every session, which announces notifications/tools/list_changed. */
  addTool(name: string): void;
  /** Calls of the added tools, with their arguments. */
  addedCalls: Array<{ tool: string; args: Record<string, unknown> }>;
  /** Keys called with `label`. */
  keysFor(label: string): string[];
  /** Side effects for `label`, over all keys. */
  effectsFor(label: string): number;
  close(): Promise<void>;
}

const bump = (m: Map<string, number>, k: string) => m.set(k, (m.get(k) ?? 0) + 1);

/**
 * `workMs`: how long the work takes, for every label or per label. `holdMs`: how long the result
 * is held back after the side effect, and `onEffect` is told of each effect as it happens, so a
 * test can land a kill after the tool acted and before its caller has the result.
 */
export async function startCountingMcpServer(opts: { workMs?: number | ((label: string) => number); holdMs?: number; onEffect?: (key: string, label: string) => void } = {}): Promise<CountingMcpServer> {
  const workMsOf = typeof opts.workMs === 'function' ? opts.workMs : () => (opts.workMs as number | undefined) ?? 3000;
  const closing = new AbortController();
  const sideEffects = new Map<string, number>();
  const callsReceived = new Map<string, number>();
  const callTimes = new Map<string, number[]>();
  const labelOf = new Map<string, string>();
  const inFlight = new Set<string>();
  const metas: Array<Record<string, unknown>> = [];
  const traceparents: Array<string | undefined> = [];
  const results = new Map<string, Promise<CallToolResult>>();

  // The work itself ignores the caller: a client that went away (a killed worker) does not undo it.
  const work = (key: string, label: string): Promise<CallToolResult> => {
    inFlight.add(key);
    return sleep(workMsOf(label), undefined, { signal: closing.signal })
      .then(async () => {
        bump(sideEffects, key);
        const text = `counted ${label} (effect ${sideEffects.get(key)} for this key)`;
        opts.onEffect?.(key, label);
        if (opts.holdMs) await sleep(opts.holdMs, undefined, { signal: closing.signal });
        return { content: [{ type: 'text' as const, text }] };
      })
      .finally(() => inFlight.delete(key));
  };

  const extraTools: string[] = [];
  const addedCalls: Array<{ tool: string; args: Record<string, unknown> }> = [];
  const registerExtra = (mcp: McpServer, name: string) =>
    mcp.registerTool(name, { description: `A tool added later (${name})`, inputSchema: { label: z.string().optional() } }, async (args) => {
      addedCalls.push({ tool: name, args });
      return { content: [{ type: 'text' as const, text: `${name} ok` }] };
    });
  const newMcp = () => {
    const mcp = new McpServer({ name: 'counting', version: '1.0.0' });
    for (const name of extraTools) registerExtra(mcp, name);
    mcp.registerTool(
      COUNT_TOOL,
      { description: 'Counts one side effect for the label, slowly (~3 s); idempotent per _meta idempotency key', inputSchema: { label: z.string() } },
      async ({ label }, extra) => {
        const meta = (extra._meta ?? {}) as Record<string, unknown>;
        metas.push(meta);
        const tp = extra.requestInfo?.headers?.traceparent;
        traceparents.push(Array.isArray(tp) ? tp[0] : tp);
        const raw = meta['io.mix2api/idempotency-key'] ?? meta.idempotencyKey;
        const key = typeof raw === 'string' && raw !== '' ? raw : `no-key-${randomUUID()}`;
        bump(callsReceived, key);
        callTimes.set(key, [...(callTimes.get(key) ?? []), Date.now()]);
        if (!labelOf.has(key)) labelOf.set(key, label);
        let result = results.get(key);
        if (!result) {
          result = work(key, label);
          results.set(key, result);
          result.catch(() => results.delete(key)); // only when closing
        }
        return result;
      },
    );
    return mcp;
  };

  const http = await startMcpHttp(() => newMcp());

  const keysFor = (label: string) => [...labelOf].filter(([, l]) => l === label).map(([k]) => k);
  return {
    url: `http://127.0.0.1:${http.port}/mcp`,
    sideEffects,
    callsReceived,
    callTimes,
    labelOf,
    inFlight,
    traceparents,
    metas,
    keysFor,
    addedCalls,
    addTool: (name) => {
      extraTools.push(name);
      for (const mcp of http.servers()) registerExtra(mcp, name);
    },
    effectsFor: (label) => keysFor(label).reduce((n, k) => n + (sideEffects.get(k) ?? 0), 0),
    close: async () => {
      closing.abort();
      await http.close();
    },
  };
}
