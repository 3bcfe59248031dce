/**
 * The MCP servers the demo model is bound to: the reference servers shipped as dependencies
 * (server-everything over stdio, server-filesystem on a sandbox folder under the data dir).
 */
import { mkdirSync, writeFileSync, existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';

const script = (pkg: string) => join(dirname(require.resolve(`@modelcontextprotocol/${pkg}/package.json`)), 'dist', 'index.js');

export function demoMcpServers(dataDir: string): Array<Record<string, unknown>> {
  const sandbox = resolve(dataDir, 'sandbox');
  mkdirSync(sandbox, { recursive: true });
  const readme = join(sandbox, 'README.txt');
  if (!existsSync(readme)) writeFileSync(readme, 'A sandbox folder for the mix2api demo: the filesystem MCP server can read and write here.\n');
  return [
    { name: 'everything', transport: 'stdio', command: process.execPath, args: [script('server-everything'), 'stdio'], timeoutSeconds: 60 },
    { name: 'fs', transport: 'stdio', command: process.execPath, args: [script('server-filesystem'), sandbox], timeoutSeconds: 30 },
  ];
}
