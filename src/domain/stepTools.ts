/**
 * What a model step's request says about tools, shaped per step: the MCP tools it offers (every
 * one while they fit the model's limits as they are, else a selection, see ./toolSelection) and
 * the model's tool instruction. Done where the step is called, from the step's own input, so a
 * retry or a moved step shapes the same request.
 */
import type { ChatMessage } from './chat';
import { estimateTokens } from './contextGuard';
import type { ToolInstruction, ToolOfferRecord, ToolSelectionSettings } from './run';
import { selectTools } from './toolSelection';

type Body = { messages: ChatMessage[]; tools?: unknown[]; [k: string]: unknown };

const nameOf = (t: unknown): string | undefined => (t as { function?: { name?: unknown } } | null)?.function?.name as string | undefined;

/**
 * The step's tools: untouched while every tool fits `maxTools` and the MCP tools fit
 * `budgetTokens`; else the client's tools and a selection of the MCP tools (`serverTools` names
 * them), with what was offered and how many were held back.
 */
export function offerTools<B extends Body>(body: B, serverTools: readonly string[], s: ToolSelectionSettings | undefined): { body: B; offer?: ToolOfferRecord } {
  const all = body.tools ?? [];
  if (!s || s.strategy !== 'rank' || all.length === 0) return { body };
  const server = new Set(serverTools);
  const ours = all.filter((t) => server.has(nameOf(t) ?? ''));
  if (all.length <= s.maxTools && estimateTokens(ours) <= s.budgetTokens) return { body };
  const clientTools = all.filter((t) => !server.has(nameOf(t) ?? ''));
  const o = selectTools({ clientTools, serverTools: ours as Parameters<typeof selectTools>[0]['serverTools'], messages: body.messages }, s);
  return { body: { ...body, tools: o.tools }, offer: { offered: o.offered, heldBack: o.heldBack.length } };
}

/**
 * The messages with the tool instruction after the client's leading system and developer
 * messages, and (every `everySteps` steps after the first) again at the end, where a long loop's
 * model reads it last.
 */
export function withInstruction(messages: ChatMessage[], step: number, instruction: ToolInstruction | undefined): ChatMessage[] {
  if (!instruction) return messages;
  const said: ChatMessage = { role: 'system', content: instruction.text };
  let lead = 0;
  while (lead < messages.length && (messages[lead]!.role === 'system' || messages[lead]!.role === 'developer')) lead++;
  const out = [...messages.slice(0, lead), said, ...messages.slice(lead)];
  if (instruction.everySteps > 0 && step > 0 && step % instruction.everySteps === 0) out.push(said);
  return out;
}
