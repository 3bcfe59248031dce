/**
 * Re-joins a client's follow-up request with the server-side steps of the run that ended with
 * the client's own tool calls: the client's assistant message (client calls only, run-scoped
 * ids) is replaced by the run's hidden transcript, and the client's tool results get the
 * model's original call ids back. The upstream then sees one coherent conversation.
 */
import type { ChatMessage } from './chat';
import type { HiddenSteps } from './run';
import { runOfClientCallId } from './toolCalls';

function callIdsOf(m: ChatMessage): string[] {
  const calls = Array.isArray(m.tool_calls) ? (m.tool_calls as Array<{ id?: unknown }>) : [];
  return calls.map((c) => (typeof c.id === 'string' ? c.id : '')).filter(Boolean);
}

/** Runs whose hidden steps this conversation refers to. */
export function referencedRuns(messages: readonly ChatMessage[]): string[] {
  const runs = new Set<string>();
  for (const m of messages) {
    if (m.role !== 'assistant') continue;
    for (const id of callIdsOf(m)) {
      const run = runOfClientCallId(id);
      if (run) runs.add(run);
    }
  }
  return [...runs];
}

export function rejoin(messages: readonly ChatMessage[], hidden: ReadonlyMap<string, HiddenSteps>): ChatMessage[] {
  const idMap = new Map<string, string>();
  for (const h of hidden.values()) for (const [client, original] of Object.entries(h.callIds)) idMap.set(client, original);
  const out: ChatMessage[] = [];
  for (const m of messages) {
    if (m.role === 'assistant') {
      const run = callIdsOf(m).map(runOfClientCallId).find(Boolean);
      const h = run ? hidden.get(run) : undefined;
      if (h) {
        out.push(...h.messages);
        continue;
      }
    }
    if (m.role === 'tool' && typeof m.tool_call_id === 'string' && idMap.has(m.tool_call_id)) {
      out.push({ ...m, tool_call_id: idMap.get(m.tool_call_id) });
      continue;
    }
    out.push(m);
  }
  return out;
}
