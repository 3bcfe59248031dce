/**
 * The cost of `previous_response_id` as a conversation grows: conversations of 50 turns through
 * POST /v1/responses, each turn continuing the last by `previous_response_id`, interleaved with
 * the same conversations sent whole by the client (`input` holds every earlier message), which
 * send the upstream the same body. The difference is what reading the previous response costs;
 * it should not grow with the turn (two one-event history reads per turn). Prints p50 per group
 * of turns, the difference and turn 46–50 over turn 2–6.
 * Run: `npm run bench:turns`. Numbers only — no pass/fail.
 */
import { rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import OpenAI from 'openai';
import type { ResponseInputItem } from 'openai/resources/responses/responses';
import { parseConfig } from '../src/config/load';
import { startDevServer, type DevServer } from '../src/connectors/temporalDevServer';
import { installLogger } from '../src/roles/logging';
import { startSystem, type RunningSystem } from '../src/roles/system';
import { freePort } from '../test/support/mcpServers';
import { startScriptedUpstream, type ScriptedUpstream } from '../test/support/scriptedUpstream';
import { pct, printAligned, runBench } from './stats';

const TURNS = 50;
const CONVERSATIONS = 4;
const GROUPS: Array<[from: number, to: number]> = [[2, 6], [11, 15], [21, 25], [31, 35], [46, 50]];
const ANSWER = Array.from({ length: 60 }, (_, i) => `word${i}`).join(' '); // ~400 bytes a turn

async function main(): Promise<void> {
  const root = resolve(__dirname, '..');
  const dataDir = join(root, '.data', `bench-turns-${process.pid}`);
  let dev: DevServer | undefined;
  let system: RunningSystem | undefined;
  let upstream: ScriptedUpstream | undefined;
  installLogger('WARN');
  try {
    dev = await startDevServer({ root, dbFile: join(dataDir, 'temporal.db'), port: await freePort(), headless: true });
    upstream = await startScriptedUpstream();
    upstream.setDefault({ steps: [{ kind: 'text', text: ANSWER }] });
    const config = parseConfig(
      {
        server: { port: 0 },
        temporal: { address: dev.address, taskQueue: `bench-turns-${process.pid}` },
        upstreams: [{ name: 'scripted', baseURL: upstream.url }],
        models: [{ id: 'm', upstream: 'scripted', model: 'scripted' }],
      },
      {},
    );
    system = await startSystem({ config, temporalAddress: dev.address, roles: { worker: true, api: true } });
    const openai = new OpenAI({ baseURL: `${system.apiUrl}/v1`, apiKey: 'none', maxRetries: 0 });

    // ms per turn, by turn number (1-based), for each way of continuing.
    const chained: number[][] = Array.from({ length: TURNS + 1 }, () => []);
    const whole: number[][] = Array.from({ length: TURNS + 1 }, () => []);
    for (let c = 0; c < CONVERSATIONS; c++) {
      let previous: string | undefined;
      const sent: ResponseInputItem[] = [];
      for (let turn = 1; turn <= TURNS; turn++) {
        const ask = `conversation ${c} turn ${turn}: and then?`;
        let t0 = performance.now();
        const a = await openai.responses.create({ model: 'm', input: ask, ...(previous ? { previous_response_id: previous } : {}) });
        chained[turn]!.push(performance.now() - t0);
        previous = a.id;
        sent.push({ role: 'user', content: ask });
        t0 = performance.now();
        await openai.responses.create({ model: 'm', input: sent });
        whole[turn]!.push(performance.now() - t0);
        sent.push({ role: 'assistant', content: a.output_text });
      }
    }
    const p50Of = (by: number[][], [from, to]: [number, number]) => pct(by.slice(from, to + 1).flat(), 50);
    const lines = GROUPS.map((g) => {
      const [a, w] = [p50Of(chained, g), p50Of(whole, g)];
      return [`turns ${g[0]}–${g[1]}`, a.toFixed(1), w.toFixed(1), (a - w).toFixed(1)];
    });
    const first = p50Of(chained, GROUPS[0]!) - p50Of(whole, GROUPS[0]!);
    const last = p50Of(chained, GROUPS.at(-1)!) - p50Of(whole, GROUPS.at(-1)!);
    printAligned(
      ['turns', 'previous_response_id p50 ms', 'whole input p50 ms', 'read cost ms'],
      lines,
      `${CONVERSATIONS} conversations × ${TURNS} turns; each turn's answer ~${ANSWER.length} bytes; read cost = previous_response_id − whole input, same turn`,
    );
    console.log(`\nturn 50 vs turn 1: previous_response_id ${(p50Of(chained, GROUPS.at(-1)!) / p50Of(chained, GROUPS[0]!)).toFixed(2)}×, whole input ${(p50Of(whole, GROUPS.at(-1)!) / p50Of(whole, GROUPS[0]!)).toFixed(2)}×; read cost ${first.toFixed(1)} → ${last.toFixed(1)} ms`);
  } finally {
    await system?.stop();
    await upstream?.close();
    await dev?.stop();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

runBench(main);
