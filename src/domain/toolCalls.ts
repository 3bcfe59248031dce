/**
 * What a client may see of the model's tool calls when mix2api runs some of them itself:
 * calls to server-side (MCP) tools are hidden, the caller's own calls are renumbered from 0
 * (stable `index`) and get ids that name the run, so a follow-up request can be re-joined
 * with the hidden steps (see ./rejoin).
 */
import type { Delta, ToolCallDelta } from './chat';

const CLIENT_CALL_ID = /^call_mx([0-9a-f]{32})x(\d+)$/;

/** `call_mx<run hex>x<n>`: the n-th client call of run `chatcmpl-<run hex>`. */
export function clientCallId(runId: string, n: number): string | null {
  const hex = /^chatcmpl-([0-9a-f]{32})$/.exec(runId)?.[1];
  return hex ? `call_mx${hex}x${n}` : null;
}

export function runOfClientCallId(id: string): string | null {
  const m = CLIENT_CALL_ID.exec(id);
  return m ? `chatcmpl-${m[1]}` : null;
}

/** Filters one step's streamed tool-call deltas for the client. */
export class ClientCallFilter {
  private readonly route = new Map<number, { server: boolean; clientIndex: number }>();
  private readonly held = new Map<number, ToolCallDelta[]>();
  private nextClientIndex: number;

  constructor(
    private readonly isServerTool: (name: string) => boolean,
    private readonly idFor: (clientIndex: number) => string | null,
    firstClientIndex = 0,
  ) {
    this.nextClientIndex = firstClientIndex;
  }

  pass(d: Delta): Delta | null {
    if (!d.tool_calls) return d;
    const out: ToolCallDelta[] = [];
    for (const tc of d.tool_calls) {
      let r = this.route.get(tc.index);
      if (!r) {
        if (!tc.function?.name) {
          // Name not seen yet: hold the piece until we know whose call it is.
          this.held.set(tc.index, [...(this.held.get(tc.index) ?? []), tc]);
          continue;
        }
        r = { server: this.isServerTool(tc.function.name), clientIndex: this.isServerTool(tc.function.name) ? -1 : this.nextClientIndex++ };
        this.route.set(tc.index, r);
        const pieces = [...(this.held.get(tc.index) ?? []), tc];
        this.held.delete(tc.index);
        if (!r.server) out.push(...this.rewrite(merge(pieces), r.clientIndex, true));
        continue;
      }
      if (!r.server) out.push(...this.rewrite(tc, r.clientIndex, false));
    }
    const { tool_calls: _all, ...rest } = d;
    if (out.length > 0) return { ...rest, tool_calls: out };
    return Object.keys(rest).length > 0 ? rest : null;
  }

  private rewrite(tc: ToolCallDelta, clientIndex: number, first: boolean): ToolCallDelta[] {
    const copy: ToolCallDelta = { ...tc, index: clientIndex };
    if (first) {
      const id = this.idFor(clientIndex);
      if (id) copy.id = id;
      copy.type = 'function';
    }
    return [copy];
  }
}

function merge(pieces: ToolCallDelta[]): ToolCallDelta {
  const first = pieces[0]!;
  const merged: ToolCallDelta = { index: first.index, function: { name: '', arguments: '' } };
  for (const p of pieces) {
    if (p.id) merged.id = p.id;
    if (p.type) merged.type = p.type;
    if (p.function?.name) merged.function!.name += p.function.name;
    if (p.function?.arguments) merged.function!.arguments += p.function.arguments;
  }
  return merged;
}
