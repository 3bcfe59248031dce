/**
 * McpPool against real MCP servers: server-everything over stdio, Streamable HTTP and legacy SSE,
 * server-memory over stdio, and an in-process SDK server for list_changed and _meta checks.
 */
import type { ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { EVERYTHING, MEMORY, freePort, startEverything, stopProcess as stop } from '../support/mcpServers';
import { McpServerSchema, type McpServerInput } from '../../src/config/mcpSchema';
import {
  McpPool,
  McpTimeoutError,
  McpToolError,
  McpTransportError,
  type McpPoolLogEvent,
} from '../../src/connectors/mcp/pool';
import { toolResultToText } from '../../src/connectors/mcp/toolResult';

jest.setTimeout(30_000);

const KEY = { idempotencyKey: 'test-key', timeoutMs: 10_000 };

const text = (r: CallToolResult) => toolResultToText(r, 65536).text;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Live children of this process running a stdio MCP server (what the pool spawns), from /proc. */
function stdioServerChildren(): Array<{ pid: number; cmd: string }> {
  const out: Array<{ pid: number; cmd: string }> = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(fields[1]) !== process.pid || fields[0] === 'Z') continue;
      const cmd = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0').join(' ');
      if (cmd.includes(`${EVERYTHING} stdio`) || cmd.includes(MEMORY)) out.push({ pid: Number(entry), cmd });
    } catch {
      // the process exited while we looked
    }
  }
  return out;
}

async function waitFor(check: () => boolean | Promise<boolean>, what: string, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

const cfg = (input: McpServerInput) => McpServerSchema.parse(input);

describe('McpPool with real MCP servers', () => {
  let dir: string;
  let httpPort: number;
  let ssePort: number;
  let httpServer: ChildProcess | undefined;
  let sseServer: ChildProcess | undefined;
  let pool: McpPool;
  const logs: McpPoolLogEvent[] = [];

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'mix2api-mcp-'));
    [httpPort, ssePort] = [await freePort(), await freePort()];
    [httpServer, sseServer] = await Promise.all([
      startEverything('streamableHttp', httpPort),
      startEverything('sse', ssePort),
    ]);
    pool = new McpPool(
      [
        cfg({ name: 'everything', transport: 'stdio', command: process.execPath, args: [EVERYTHING, 'stdio'] }),
        cfg({
          name: 'memory',
          transport: 'stdio',
          command: process.execPath,
          args: [MEMORY],
          env: { MEMORY_FILE_PATH: 'env:MIX_TEST_MEMORY_FILE' },
        }),
        cfg({
          name: 'web',
          transport: 'http',
          url: `http://127.0.0.1:${httpPort}/mcp`,
          headers: { 'X-Test-Token': 'env:MIX_TEST_TOKEN' },
        }),
        // An `http` server that only speaks the 2024-11-05 HTTP+SSE protocol: reached through the fallback.
        cfg({ name: 'legacy', transport: 'http', url: `http://127.0.0.1:${ssePort}/sse` }),
        // The extra argument (ignored by the server) tells this child apart from `everything`'s in /proc.
        cfg({
          name: 'filtered',
          transport: 'stdio',
          command: process.execPath,
          args: [EVERYTHING, 'stdio', 'filtered'],
          tools: { allow: ['get-*'], deny: ['get-env'] },
        }),
        cfg({ name: 'broken', transport: 'stdio', command: join(dir, 'no-such-binary') }),
      ],
      {
        PATH: process.env.PATH,
        HOME: dir,
        MIX_TEST_MEMORY_FILE: join(dir, 'memory.jsonl'),
        MIX_TEST_TOKEN: 'secret',
      },
      { clientName: 'mix2api-test', onLog: (e) => logs.push(e) },
    );
  });

  afterAll(async () => {
    await pool?.closeAll();
    await Promise.all([stop(httpServer), stop(sseServer)]);
    rmSync(dir, { recursive: true, force: true });
  });

  describe('stdio (server-everything)', () => {
    it('shares one connect between concurrent first uses and lists tools', async () => {
      const [tools] = await Promise.all([
        pool.listTools('everything'),
        pool.listTools('everything'),
        pool.callTool('everything', 'echo', { message: 'a' }, KEY),
        pool.callTool('everything', 'echo', { message: 'b' }, KEY),
      ]);
      const names = tools.map((t) => t.name);
      expect(names).toEqual(expect.arrayContaining(['echo', 'get-sum', 'trigger-long-running-operation']));
      expect(tools.find((t) => t.name === 'echo')?.inputSchema).toMatchObject({ type: 'object' });
      expect(stdioServerChildren().filter((c) => c.cmd.includes(EVERYTHING))).toHaveLength(1); // before `filtered` starts
    });

    it('caches the tool list', async () => {
      // (server-everything announces list_changed right after initialising, so the very first list may be refetched.)
      const tools = await pool.listTools('everything');
      expect(await pool.listTools('everything')).toBe(tools);
    });

    it('calls echo', async () => {
      const result = await pool.callTool('everything', 'echo', { message: 'hello' }, KEY);
      expect(text(result)).toBe('Echo: hello');
      expect(result.isError).toBeFalsy();
    });

    it('applies tools.allow / tools.deny to the listing', async () => {
      const names = (await pool.listTools('filtered')).map((t) => t.name);
      expect(names).toContain('get-sum');
      expect(names).not.toContain('get-env');
      expect(names).not.toContain('echo');
    });

    it('returns tool failures as isError results, not exceptions', async () => {
      const unknown = await pool.callTool('everything', 'no-such-tool', {}, KEY);
      expect(unknown.isError).toBe(true);
      expect(text(unknown)).toMatch(/no-such-tool not found/);

      const invalid = await pool.callTool('everything', 'get-sum', { a: 'x' }, KEY);
      expect(invalid.isError).toBe(true);
      expect(text(invalid)).toMatch(/validation/i);
    });

    it('hides task-only tools, whose calls fail with McpToolError', async () => {
      expect((await pool.listTools('everything')).map((t) => t.name)).not.toContain('simulate-research-query');
      const err = await pool.callTool('everything', 'simulate-research-query', { topic: 'x' }, KEY).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(McpToolError);
      expect(err).toMatchObject({ code: -32600, retryable: false });
    });

    it('starts stdio servers with a minimal environment', async () => {
      const env = JSON.parse(text(await pool.callTool('everything', 'get-env', {}, KEY))) as Record<string, string>;
      expect(env).toMatchObject({ PATH: process.env.PATH, HOME: dir });
      // The pool's env holds secrets (MIX_TEST_TOKEN) that only servers asking for them get.
      // LOGNAME, SHELL, TERM and USER are added by the SDK from process.env.
      expect(Object.keys(env).filter((k) => !['PATH', 'HOME', 'LOGNAME', 'SHELL', 'TERM', 'USER'].includes(k))).toEqual([]);
    });

    it('rejects an unconfigured server with McpToolError', async () => {
      await expect(pool.callTool('nope', 'echo', {}, KEY)).rejects.toBeInstanceOf(McpToolError);
    });

    it('times out with McpTimeoutError and keeps the connection', async () => {
      const started = Date.now();
      const call = pool.callTool('everything', 'trigger-long-running-operation', { duration: 3, steps: 1 }, {
        ...KEY,
        timeoutMs: 300,
      });
      await expect(call).rejects.toBeInstanceOf(McpTimeoutError);
      expect(Date.now() - started).toBeLessThan(2_000);
      expect(text(await pool.callTool('everything', 'echo', { message: 'still here' }, KEY))).toBe('Echo: still here');
    });

    it('cancels a long-running tool on abort, reporting progress until then', async () => {
      const controller = new AbortController();
      const progress: number[] = [];
      const started = Date.now();
      const call = pool.callTool('everything', 'trigger-long-running-operation', { duration: 20, steps: 40 }, {
        ...KEY,
        signal: controller.signal,
        onProgress: (p) => progress.push(p.progress),
      });
      setTimeout(() => controller.abort(new Error('user went away')), 1_200);
      await expect(call).rejects.toThrow('user went away');
      expect(Date.now() - started).toBeLessThan(2_500);
      expect(progress.length).toBeGreaterThanOrEqual(1);
      expect(text(await pool.callTool('everything', 'echo', { message: 'after abort' }, KEY))).toBe('Echo: after abort');
    });

    it('rejects at once with an already-aborted signal', async () => {
      const controller = new AbortController();
      controller.abort(new Error('too late'));
      await expect(pool.callTool('everything', 'echo', { message: 'x' }, { ...KEY, signal: controller.signal })).rejects.toThrow(
        'too late',
      );
    });

    it('reconnects after the server process dies', async () => {
      const children = stdioServerChildren().filter((c) => c.cmd.trim().endsWith(`${EVERYTHING} stdio`));
      expect(children).toHaveLength(1);
      const child = children[0];
      process.kill(child!.pid, 'SIGKILL');
      await waitFor(() => !stdioServerChildren().some((c) => c.pid === child!.pid), 'the child to exit');
      await waitFor(
        () => logs.some((l) => l.server === 'everything' && /connection closed/.test(l.message)),
        'the pool to notice',
      );
      expect(text(await pool.callTool('everything', 'echo', { message: 'again' }, KEY))).toBe('Echo: again');
    });

    it('reports a server that cannot start as McpTransportError', async () => {
      const err = await pool.listTools('broken').catch((e: unknown) => e);
      expect(err).toBeInstanceOf(McpTransportError);
      expect((err as McpTransportError).message).toMatch(/cannot connect to MCP server broken.*ENOENT/);
    });
  });

  describe('stdio (server-memory)', () => {
    it('passes cfg.env with resolved env: references to the server', async () => {
      const created = await pool.callTool(
        'memory',
        'create_entities',
        { entities: [{ name: 'mix2api', entityType: 'project', observations: ['runs tools'] }] },
        KEY,
      );
      expect(created.isError).toBeFalsy();
      const graph = await pool.callTool('memory', 'read_graph', {}, KEY);
      expect(text(graph)).toContain('mix2api');
      expect(existsSync(join(dir, 'memory.jsonl'))).toBe(true);
    });
  });

  describe('Streamable HTTP (server-everything)', () => {
    it('lists and calls tools', async () => {
      const names = (await pool.listTools('web')).map((t) => t.name);
      expect(names).toContain('echo');
      expect(text(await pool.callTool('web', 'echo', { message: 'over http' }, KEY))).toBe('Echo: over http');
    });

    it('fails with McpTransportError while the server is down and reconnects once it is back', async () => {
      await stop(httpServer);
      const err = await pool.callTool('web', 'echo', { message: 'down' }, KEY).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(McpTransportError);
      expect((err as McpTransportError).retryable).toBe(true);

      httpServer = await startEverything('streamableHttp', httpPort);
      expect(text(await pool.callTool('web', 'echo', { message: 'back' }, KEY))).toBe('Echo: back');
    });
  });

  describe('legacy HTTP+SSE (server-everything sse)', () => {
    it('falls back from Streamable HTTP to SSE', async () => {
      expect(text(await pool.callTool('legacy', 'echo', { message: 'over sse' }, KEY))).toBe('Echo: over sse');
      expect(logs.some((l) => l.server === 'legacy' && /legacy SSE/.test(l.message))).toBe(true);
    });
  });

  it('closeAll leaves no child processes and refuses further use', async () => {
    expect(stdioServerChildren().length).toBeGreaterThan(0);
    await pool.closeAll();
    expect(stdioServerChildren()).toEqual([]);
    await expect(pool.listTools('everything')).rejects.toBeInstanceOf(McpTransportError);
  });
});

describe('McpPool with an in-process SDK server', () => {
  let http: Server;
  let mcp: McpServer;
  let pool: McpPool;
  const seenMeta: unknown[] = [];
  let serverSawCancel = false;

  beforeAll(async () => {
    mcp = new McpServer({ name: 'inproc', version: '1.0.0' });
    mcp.registerTool('whoami', { description: 'Reports the request _meta' }, async (extra) => {
      seenMeta.push(extra._meta);
      return { content: [{ type: 'text', text: 'ok' }] };
    });
    mcp.registerTool('slow', { description: 'Waits until cancelled' }, (extra) => {
      return new Promise((done) => {
        extra.signal.addEventListener('abort', () => {
          serverSawCancel = true;
          done({ content: [] });
        });
      });
    });
    const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: () => randomUUID() });
    await mcp.connect(transport);
    http = createServer((req, res) => void transport.handleRequest(req, res));
    await new Promise<void>((ok) => http.listen(0, '127.0.0.1', ok));
    const address = http.address();
    if (!address || typeof address === 'string') throw new Error('no port');
    pool = new McpPool([cfg({ name: 'inproc', transport: 'http', url: `http://127.0.0.1:${address.port}/mcp` })], {});
  });

  afterAll(async () => {
    await pool?.closeAll();
    await mcp?.close();
    http?.closeAllConnections();
    await new Promise((ok) => http?.close(ok));
  });

  it('sends the idempotency key in _meta', async () => {
    await pool.callTool('inproc', 'whoami', {}, { idempotencyKey: 'wf-1/step-2', timeoutMs: 5_000 });
    expect(seenMeta[0]).toMatchObject({ idempotencyKey: 'wf-1/step-2', 'io.mix2api/idempotency-key': 'wf-1/step-2' });
  });

  it('tells the server when a call is aborted (notifications/cancelled)', async () => {
    const controller = new AbortController();
    const call = pool.callTool('inproc', 'slow', {}, { idempotencyKey: 'k', timeoutMs: 5_000, signal: controller.signal });
    setTimeout(() => controller.abort(), 100);
    await expect(call).rejects.toMatchObject({ name: 'AbortError' });
    await waitFor(() => serverSawCancel, 'the server to see the cancellation');
  });

  it('refreshes the cached tool list on notifications/tools/list_changed', async () => {
    const first = await pool.listTools('inproc');
    expect(first.map((t) => t.name)).toEqual(['whoami', 'slow']);
    expect(await pool.listTools('inproc')).toBe(first);

    mcp.registerTool('late', { description: 'Registered after connect' }, async () => ({ content: [] }));
    await waitFor(async () => (await pool.listTools('inproc')).some((t) => t.name === 'late'), 'the new tool to be listed');
  });
});
