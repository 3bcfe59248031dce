/**
 * The reference MCP servers from npm, as tests start them: stdio configs for mix2api, and
 * server-everything in an HTTP mode as its own process (so a test can kill and restart it).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { connect, createServer } from 'node:net';
import { resolve } from 'node:path';

const modules = resolve(__dirname, '../../node_modules/@modelcontextprotocol');
export const EVERYTHING = `${modules}/server-everything/dist/index.js`;
export const MEMORY = `${modules}/server-memory/dist/index.js`;
export const FILESYSTEM = `${modules}/server-filesystem/dist/index.js`;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((ok) => srv.listen(0, '127.0.0.1', ok));
  const address = srv.address();
  await new Promise<void>((ok) => srv.close(() => ok()));
  if (!address || typeof address === 'string') throw new Error('no port');
  return address.port;
}

export async function waitForPort(port: number, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const open = await new Promise<boolean>((ok) => {
      const socket = connect(port, '127.0.0.1');
      socket.once('connect', () => (socket.destroy(), ok(true)));
      socket.once('error', () => ok(false));
    });
    if (open) return;
    if (Date.now() > deadline) throw new Error(`nothing listening on ${port}`);
    await sleep(50);
  }
}

/** server-everything in an HTTP mode; it takes its port from PORT and logs every request to stdout. */
export async function startEverything(mode: 'streamableHttp' | 'sse', port: number): Promise<ChildProcess> {
  const child = spawn(process.execPath, [EVERYTHING, mode], { env: { PATH: process.env.PATH, PORT: String(port) }, stdio: 'ignore' });
  await waitForPort(port);
  return child;
}

export async function stopProcess(child: ChildProcess | undefined): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((ok) => child.once('exit', ok));
  child.kill('SIGKILL');
  await exited;
}

export const stdioServer = (name: string, script: string, args: string[] = [], env?: Record<string, string>) => ({
  name,
  transport: 'stdio' as const,
  command: process.execPath,
  args: [script, ...args],
  ...(env ? { env } : {}),
});
