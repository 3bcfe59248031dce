/**
 * The Responses API front door (`POST /v1/responses`, `GET /v1/responses/{id}`): the request is
 * translated into the Chat Completions body the run engine takes, the run is started through the
 * same path (routes, tools, limits, idempotency, workflow), and its events are rendered as
 * Responses output items and stream events. A response id is its run's id (`resp_<hex>` is
 * `chatcmpl-<hex>`), so the Temporal UI, `/v1/runs/{id}` and the response are one thing.
 */
import type { Request, Response } from 'express';
import { z } from 'zod';
import { WorkflowNotFoundError } from '@temporalio/client';
import { decodeFromPayloadsAtIndex } from '@temporalio/common/lib/internal-non-workflow';
import type { ChatMessage, Usage } from '../../domain/chat';
import { deltaOf, type RunEvent, type WireError } from '../../domain/events';
import { STATE_QUERY, type ChatCompletionInput, type RunState } from '../../domain/run';
import { START } from '../../domain/positions';
import { endingLease, launchRun, type CompletionDeps } from '../engine/launch';
import { ApiError, badRequest, errorBody, toApiError } from '../http/errors';
import { queryRun } from '../http/query';
import { decideApproval } from '../engine/approvals';
import { relayRun } from '../http/relay';
import { peerSecret } from '../http/peer';
import { ChatCompletionRequestSchema, INPUT_BOUNDS, issueParam } from '../engine/request';

const RUN_PREFIX = 'chatcmpl-';
/**
 * A run answers as one response, or as several when it stops for approvals: the Responses API
 * ends a response at an `mcp_approval_request`, and the client's `mcp_approval_response` comes in
 * a new request. Segment 0 is `resp_<hex>`, the part after the k-th approval `resp_<hex>_<k>`.
 */
interface ResponseRef {
  runId: string;
  hex: string;
  segment: number;
}
const responseIdOf = (hex: string, segment: number) => `resp_${hex}${segment > 0 ? `_${segment}` : ''}`;
function refOf(responseId: string): ResponseRef | null {
  const m = /^resp_([0-9a-f]{32})(?:_([1-9]\d{0,3}))?$/.exec(responseId);
  return m ? { runId: RUN_PREFIX + m[1]!, hex: m[1]!, segment: m[2] ? Number(m[2]) : 0 } : null;
}

// ---- the request ----

const TextPart = z.looseObject({ type: z.enum(['input_text', 'output_text']), text: z.string() });
const ImagePart = z.looseObject({ type: z.literal('input_image'), image_url: z.string().optional(), detail: z.string().optional() });
const MessageItem = z.looseObject({
  type: z.literal('message').optional(),
  role: z.enum(['user', 'assistant', 'system', 'developer']),
  content: z.union([z.string(), z.array(z.union([TextPart, ImagePart])).max(INPUT_BOUNDS.contentParts)]),
});
const FunctionCallItem = z.looseObject({ type: z.literal('function_call'), call_id: z.string().min(1), name: z.string().min(1), arguments: z.string() });
const FunctionCallOutputItem = z.looseObject({ type: z.literal('function_call_output'), call_id: z.string().min(1), output: z.union([z.string(), z.array(TextPart)]) });
const ApprovalResponseItem = z.looseObject({ type: z.literal('mcp_approval_response'), approval_request_id: z.string().min(1), approve: z.boolean(), reason: z.string().nullish() });
const InputItem = z.union([MessageItem, FunctionCallItem, FunctionCallOutputItem, ApprovalResponseItem]);

const FunctionTool = z.looseObject({
  type: z.literal('function'),
  name: z.string().regex(/^[a-zA-Z0-9_-]{1,64}$/, 'must match ^[a-zA-Z0-9_-]{1,64}$'),
  description: z.string().nullish(),
  parameters: z.record(z.string(), z.unknown()).nullish(),
  strict: z.boolean().nullish(),
});
const McpTool = z.looseObject({
  type: z.literal('mcp'),
  server_label: z.string().min(1),
  allowed_tools: z.union([z.array(z.string()), z.looseObject({ tool_names: z.array(z.string()).optional() })]).nullish(),
  require_approval: z.union([z.enum(['never', 'always']), z.record(z.string(), z.unknown())]).nullish(),
  server_url: z.string().optional(),
});

/** Every field the Responses API accepts that mix2api understands; anything else is a 400 naming it. */
const ResponsesRequestSchema = z
  .object({
    model: z.string().min(1).max(INPUT_BOUNDS.modelChars),
    input: z.union([z.string(), z.array(InputItem).min(1).max(INPUT_BOUNDS.messages)]),
    instructions: z.string().nullish(),
    tools: z.array(z.union([FunctionTool, McpTool])).max(INPUT_BOUNDS.tools).optional(),
    tool_choice: z.union([z.enum(['auto', 'none', 'required']), z.looseObject({ type: z.literal('function'), name: z.string() })]).optional(),
    parallel_tool_calls: z.boolean().nullish(),
    stream: z.boolean().nullish(),
    background: z.boolean().nullish(),
    store: z.boolean().nullish(),
    previous_response_id: z.string().nullish(),
    temperature: z.number().nullish(),
    top_p: z.number().nullish(),
    max_output_tokens: z.number().int().positive().nullish(),
    metadata: z.record(z.string().max(INPUT_BOUNDS.metadataKeyChars), z.string().max(INPUT_BOUNDS.metadataValueChars)).nullish(),
    user: z.string().optional(),
    reasoning: z.looseObject({ effort: z.enum(['minimal', 'low', 'medium', 'high']).nullish(), summary: z.string().nullish() }).nullish(),
    text: z.looseObject({ format: z.looseObject({ type: z.enum(['text', 'json_object', 'json_schema']) }).optional() }).nullish(),
  })
  .strict();

type ResponsesRequest = z.infer<typeof ResponsesRequestSchema>;

function textOf(content: string | Array<{ type: string; text?: string }>): string {
  return typeof content === 'string' ? content : content.map((p) => p.text ?? '').join('');
}

/** Responses input items as Chat Completions messages: consecutive function calls become one assistant turn. */
function messagesOf(r: ResponsesRequest): ChatMessage[] {
  const out: ChatMessage[] = [];
  if (r.instructions) out.push({ role: 'system', content: r.instructions });
  if (typeof r.input === 'string') return [...out, { role: 'user', content: r.input }];
  for (const item of r.input) {
    if (item.type === 'function_call') {
      const call = { id: item.call_id, type: 'function', function: { name: item.name, arguments: item.arguments } };
      const last = out[out.length - 1];
      if (last?.role === 'assistant' && Array.isArray(last.tool_calls)) (last.tool_calls as unknown[]).push(call);
      else out.push({ role: 'assistant', content: null, tool_calls: [call] });
    } else if (item.type === 'function_call_output') {
      out.push({ role: 'tool', tool_call_id: item.call_id, content: textOf(item.output) });
    } else if (item.type === 'mcp_approval_response') {
      continue; // decided on the waiting run, not sent upstream (see continueAfterApproval)
    } else {
      const content =
        typeof item.content === 'string'
          ? item.content
          : item.content.map((p) => (p.type === 'input_image' ? { type: 'image_url', image_url: { url: p.image_url ?? '', ...(p.detail ? { detail: p.detail } : {}) } } : { type: 'text', text: p.text }));
      out.push({ role: item.role, content });
    }
  }
  return out;
}

/** The Chat Completions body this request means. */
function chatBodyOf(r: ResponsesRequest, history: ChatMessage[]): Record<string, unknown> {
  const tools = r.tools?.map((t) =>
    t.type === 'function'
      ? { type: 'function', function: { name: t.name, ...(t.description ? { description: t.description } : {}), ...(t.parameters ? { parameters: t.parameters } : {}), ...(t.strict != null ? { strict: t.strict } : {}) } }
      : {
          type: 'mcp',
          server_label: t.server_label,
          ...(t.allowed_tools ? { allowed_tools: Array.isArray(t.allowed_tools) ? t.allowed_tools : (t.allowed_tools.tool_names ?? []) } : {}),
          ...(t.require_approval ? { require_approval: t.require_approval } : {}),
        },
  );
  const format = r.text?.format;
  return {
    model: r.model,
    messages: [...history, ...messagesOf(r)],
    stream: true,
    ...(tools ? { tools } : {}),
    ...(r.tool_choice ? { tool_choice: typeof r.tool_choice === 'string' ? r.tool_choice : { type: 'function', function: { name: r.tool_choice.name } } } : {}),
    ...(r.parallel_tool_calls != null ? { parallel_tool_calls: r.parallel_tool_calls } : {}),
    ...(r.temperature != null ? { temperature: r.temperature } : {}),
    ...(r.top_p != null ? { top_p: r.top_p } : {}),
    ...(r.max_output_tokens != null ? { max_tokens: r.max_output_tokens } : {}),
    ...(r.metadata ? { metadata: r.metadata } : {}),
    ...(r.user ? { user: r.user } : {}),
    ...(r.reasoning?.effort ? { reasoning_effort: r.reasoning.effort } : {}),
    ...(format && format.type !== 'text' ? { response_format: format.type === 'json_object' ? { type: 'json_object' } : { type: 'json_schema', json_schema: { ...format, type: undefined } } } : {}),
  };
}

/** The run behind `previous_response_id`, when it is the caller's (404 `previous_response_not_found` otherwise). */
async function loadPrevious(d: CompletionDeps, responseId: string, keyName: string) {
  const ref = refOf(responseId);
  const notFound = () => new ApiError(404, `Previous response with id '${responseId}' not found.`, 'invalid_request_error', 'previous_response_not_found', 'previous_response_id');
  if (!ref) throw notFound();
  const handle = d.client.workflow.getHandle(ref.runId);
  let state: RunState;
  try {
    state = await queryRun<RunState>(d.client, handle, STATE_QUERY);
  } catch (e) {
    if (e instanceof WorkflowNotFoundError) throw notFound();
    throw e;
  }
  if ((state.keyName ?? 'anonymous') !== keyName) throw notFound();
  return { ref, handle, state };
}

/** The conversation a previous response ended: its run's input messages, then its answer. */
async function previousConversation(d: CompletionDeps, responseId: string, keyName: string): Promise<ChatMessage[]> {
  const { ref, state } = await loadPrevious(d, responseId, keyName);
  const runId = ref.runId;
  if (!state.result) throw new ApiError(409, `Previous response '${responseId}' has not completed.`, 'invalid_request_error', 'previous_response_in_progress', 'previous_response_id');
  const input = await runInput(d, runId);
  // The answer as the client saw it: when it ended with client calls, the engine's re-join puts the
  // run's hidden server-side steps back in its place (as for a Chat Completions follow-up).
  return [...(input.body.messages as ChatMessage[]), state.result.message as unknown as ChatMessage];
}

/** A run's input, from the first event of its history (decoded through the client's codec). */
async function runInput(d: CompletionDeps, runId: string): Promise<ChatCompletionInput> {
  const h = await d.client.workflow.getHandle(runId).fetchHistory();
  const started = h.events?.[0]?.workflowExecutionStartedEventAttributes;
  return decodeFromPayloadsAtIndex<ChatCompletionInput>(d.client.options.loadedDataConverter, 0, started?.input?.payloads ?? []);
}

// ---- the response ----

type OutputItem = Record<string, unknown> & { type: string; id: string };

function wireUsage(u: Usage | undefined) {
  if (!u) return null;
  return {
    input_tokens: u.prompt_tokens,
    input_tokens_details: { cached_tokens: u.prompt_tokens_details?.cached_tokens ?? 0 },
    output_tokens: u.completion_tokens,
    output_tokens_details: { reasoning_tokens: u.completion_tokens_details?.reasoning_tokens ?? 0 },
    total_tokens: u.total_tokens,
  };
}


/**
 * Turns a run's events into Responses output items, calling `emit` with each stream event
 * (`response.output_item.added`, `….delta`, `….done`, …) as it goes.
 */
class ResponseBuilder {
  readonly output: OutputItem[] = [];
  status: 'in_progress' | 'completed' | 'incomplete' | 'failed' | 'cancelled' = 'in_progress';
  usage: Usage | undefined;
  error: WireError | null = null;
  finishReason: string | null = null;
  private text: { item: OutputItem; index: number; text: string } | null = null;
  private calls = new Map<number, { item: OutputItem; index: number }>();
  private mcp = new Map<string, { item: OutputItem; index: number }>();
  private step = -1;
  /** Approval requests seen: the run's events before the segment's own are not this response's. */
  private approvals = 0;
  /** The response has ended (its run's end, or an approval request that ends the segment). */
  over = false;

  /**
   * `hex` and `segment` are the response's: item ids are `<kind>_<hex>[_<segment>]_<output index>`,
   * the same on every reading of the run, so a resumed stream and `GET` name the items the first
   * stream named.
   */
  constructor(
    private readonly hex: string,
    private readonly segment: number,
    private readonly emit: (type: string, data: Record<string, unknown>) => void,
  ) {}

  private itemId(prefix: string): string {
    return `${prefix}_${this.hex}${this.segment > 0 ? `_${this.segment}` : ''}_${this.output.length}`;
  }

  private add(item: OutputItem): number {
    this.output.push(item);
    const index = this.output.length - 1;
    this.emit('response.output_item.added', { output_index: index, item: { ...item } });
    return index;
  }

  private done(index: number): void {
    const item = this.output[index]!;
    item.status = item.status === 'failed' ? 'failed' : 'completed';
    this.emit('response.output_item.done', { output_index: index, item: { ...item } });
  }

  private closeText(): void {
    if (!this.text) return;
    const { item, index, text } = this.text;
    const part = { type: 'output_text', text, annotations: [] };
    item.content = [part];
    this.emit('response.output_text.done', { item_id: item.id, output_index: index, content_index: 0, text });
    this.emit('response.content_part.done', { item_id: item.id, output_index: index, content_index: 0, part });
    this.done(index);
    this.text = null;
  }

  private closeCalls(): void {
    for (const { item, index } of this.calls.values()) {
      this.emit('response.function_call_arguments.done', { item_id: item.id, output_index: index, arguments: item.arguments });
      this.done(index);
    }
    this.calls.clear();
  }

  private onStep(step: number): void {
    if (step === this.step) return;
    this.step = step;
    this.closeText();
    this.closeCalls();
  }

  take(e: RunEvent): void {
    if (this.over) return;
    if (this.approvals < this.segment) {
      if (e.t === 'approval_required') this.approvals++;
      // An earlier response's part of the run; its end is this one's too.
      if (e.t !== 'end' && e.t !== 'error') return;
    }
    this.onStep(e.step);
    switch (e.t) {
      case 'deltas':
        for (const raw of e.d) {
          const d = deltaOf(raw);
          if (d.content) {
            if (!this.text) {
              const item: OutputItem = { type: 'message', id: this.itemId('msg'), status: 'in_progress', role: 'assistant', content: [] };
              this.text = { item, index: this.add(item), text: '' };
              this.emit('response.content_part.added', { item_id: item.id, output_index: this.text.index, content_index: 0, part: { type: 'output_text', text: '', annotations: [] } });
            }
            this.text.text += d.content;
            this.emit('response.output_text.delta', { item_id: this.text.item.id, output_index: this.text.index, content_index: 0, delta: d.content });
          }
          for (const c of d.tool_calls ?? []) {
            let call = this.calls.get(c.index);
            if (!call) {
              this.closeText();
              const item: OutputItem = { type: 'function_call', id: this.itemId('fc'), status: 'in_progress', call_id: c.id ?? '', name: c.function?.name ?? '', arguments: '' };
              call = { item, index: this.add(item) };
              this.calls.set(c.index, call);
            }
            const args = c.function?.arguments ?? '';
            if (args) {
              call.item.arguments = String(call.item.arguments) + args;
              this.emit('response.function_call_arguments.delta', { item_id: call.item.id, output_index: call.index, delta: args });
            }
          }
        }
        return;
      case 'tool_started': {
        this.closeText();
        const item: OutputItem = { type: 'mcp_call', id: this.itemId('mcp'), status: 'in_progress', server_label: e.server, name: e.tool, arguments: e.arguments, output: null, error: null };
        const index = this.add(item);
        this.mcp.set(e.callId, { item, index });
        this.emit('response.mcp_call.in_progress', { item_id: item.id, output_index: index });
        this.emit('response.mcp_call_arguments.done', { item_id: item.id, output_index: index, arguments: e.arguments });
        return;
      }
      case 'tool_finished': {
        const m = this.mcp.get(e.callId);
        if (!m) return;
        this.mcp.delete(e.callId);
        if (e.isError) {
          m.item.error = e.preview;
          m.item.status = 'failed';
        } else m.item.output = e.preview;
        this.emit(e.isError ? 'response.mcp_call.failed' : 'response.mcp_call.completed', { item_id: m.item.id, output_index: m.index });
        this.done(m.index);
        return;
      }
      case 'approval_required':
        // The response ends here; the client's mcp_approval_response continues the run in a new one.
        this.closeText();
        this.closeCalls();
        this.done(this.add({ type: 'mcp_approval_request', id: e.approvalId, server_label: e.server, name: e.tool, arguments: e.arguments }));
        this.status = 'completed';
        this.over = true;
        return;
      case 'end': {
        // The run's final message is authoritative for text its deltas did not carry (a joined run).
        const finalText = e.message.content ?? '';
        if (!this.text && finalText && !this.output.some((o) => o.type === 'message')) {
          const item: OutputItem = { type: 'message', id: this.itemId('msg'), status: 'in_progress', role: 'assistant', content: [] };
          this.text = { item, index: this.add(item), text: finalText };
        }
        this.closeText();
        this.closeCalls();
        this.usage = e.usage;
        this.finishReason = e.finishReason;
        this.status = e.finishReason === 'length' ? 'incomplete' : 'completed';
        this.over = true;
        return;
      }
      case 'error':
        this.closeText();
        this.closeCalls();
        this.usage = e.usage;
        this.error = e.error;
        this.status = e.error.code === 'run_cancelled' ? 'cancelled' : 'failed';
        this.over = true;
        return;
      default:
        return;
    }
  }
}

interface ResponseContext {
  id: string;
  /** The run's 32 hex digits and the response's segment of it (item ids derive from them). */
  hex: string;
  segment: number;
  created: number;
  model: string;
  request: Partial<ResponsesRequest>;
}

function responseObject(ctx: ResponseContext, b: ResponseBuilder | null) {
  const r = ctx.request;
  return {
    id: ctx.id,
    object: 'response' as const,
    created_at: ctx.created,
    status: b?.status ?? 'in_progress',
    model: ctx.model,
    output: b?.output ?? [],
    usage: wireUsage(b?.usage),
    error: b?.error ? { code: b.error.code ?? b.error.type, message: b.error.message } : null,
    incomplete_details: b?.status === 'incomplete' ? { reason: 'max_output_tokens' } : null,
    instructions: r.instructions ?? null,
    metadata: r.metadata ?? {},
    parallel_tool_calls: r.parallel_tool_calls ?? true,
    previous_response_id: r.previous_response_id ?? null,
    store: r.store ?? true,
    temperature: r.temperature ?? null,
    top_p: r.top_p ?? null,
    max_output_tokens: r.max_output_tokens ?? null,
    tool_choice: r.tool_choice ?? 'auto',
    tools: r.tools ?? [],
    text: r.text ?? { format: { type: 'text' } },
    reasoning: r.reasoning ?? null,
    background: r.background ?? false,
  };
}

// ---- the handlers ----

interface Issue {
  path: PropertyKey[];
  message: string;
  code?: string;
  errors?: Issue[][];
}

/** For a union that matched no branch, the branch issue that got furthest into the value. */
function deepest(issue: Issue, base: PropertyKey[] = []): { path: PropertyKey[]; message: string } {
  const path = [...base, ...issue.path];
  if (issue.code !== 'invalid_union' || !issue.errors?.length) return { path, message: issue.message };
  let best = { path, message: issue.message };
  for (const branch of issue.errors)
    for (const i of branch) {
      const d = deepest(i, path);
      if (d.path.length > best.path.length) best = d;
    }
  return best;
}

/** Reads a response's events into `b` (no stream), until the response is over. */
async function collect(events: AsyncGenerator<RunEvent>, b: ResponseBuilder): Promise<ResponseBuilder> {
  for await (const e of events) {
    b.take(e);
    if (b.over) break;
  }
  return b;
}

/** The run's events from its start, for as long as the request lasts. */
function runEvents(d: CompletionDeps, res: Response, runId: string): AsyncGenerator<RunEvent> {
  const abort = new AbortController();
  res.on('close', () => abort.abort());
  return relayRun({ client: d.client, live: d.live, runId, from: START, signal: abort.signal, heartbeatMs: d.config.stream.heartbeatSeconds * 1000, peerSecret: peerSecret(d.config) });
}

/** Answers a response as JSON or as its stream. */
async function answer(res: Response, events: AsyncGenerator<RunEvent>, ctx: ResponseContext, stream: boolean, keepaliveMs: number): Promise<void> {
  if (stream) return streamResponse(res, events, ctx, keepaliveMs);
  const b = await collect(events, new ResponseBuilder(ctx.hex, ctx.segment, () => undefined));
  if (b.error && b.output.length === 0) throw new ApiError(b.error.status, b.error.message, b.error.type, b.error.code, b.error.param);
  res.json(responseObject(ctx, b));
}

/**
 * A request that answers the previous response's approval requests (`mcp_approval_response`
 * items): the decisions go to the run that waits for them, and this response is the run's next
 * segment, from those decisions on.
 */
async function continueAfterApproval(d: CompletionDeps, req: Request, res: Response, r: ResponsesRequest): Promise<void> {
  const items = Array.isArray(r.input) ? r.input : [];
  const decisions = items.filter((i) => i.type === 'mcp_approval_response');
  if (decisions.length !== items.length) throw badRequest('input: mcp_approval_response items cannot be mixed with other input (the run they answer is waiting for them alone)', 'input', 'invalid_approval_input');
  if (!r.previous_response_id) throw badRequest('mcp_approval_response needs previous_response_id: the response whose mcp_approval_request it answers', 'previous_response_id');
  const keyName = String(res.locals.keyName ?? 'anonymous');
  const { ref, handle, state } = await loadPrevious(d, r.previous_response_id, keyName);
  for (const item of decisions) {
    await decideApproval(handle, ref.runId, { approvalId: item.approval_request_id, approve: item.approve, ...(item.reason ? { reason: item.reason } : {}) });
  }
  const segment = ref.segment + 1;
  const ctx: ResponseContext = { id: responseIdOf(ref.hex, segment), hex: ref.hex, segment, created: Math.floor(Date.now() / 1000), model: state.model, request: r };
  res.setHeader('X-Run-Id', ref.runId);
  // This request follows the run to its end: the run's lease ends with it, as a first request's would.
  await answer(res, endingLease(runEvents(d, res, ref.runId), d.limiter, keyName, ref.runId), ctx, r.stream === true, d.config.loop.keepaliveSeconds * 1000);
}

export function createResponsesHandler(d: CompletionDeps) {
  return async (req: Request, res: Response): Promise<void> => {
    const parsed = ResponsesRequestSchema.safeParse(req.body);
    if (!parsed.success) {
      const issue = parsed.error.issues[0]!;
      if (issue.code === 'unrecognized_keys') {
        const key = issue.keys[0]!;
        throw badRequest(`Unsupported parameter: '${key}' is not supported by this server's Responses API.`, key, 'unsupported_parameter');
      }
      const why = deepest(issue);
      const param = issueParam(why.path);
      throw badRequest(`${param ? `${param}: ` : ''}${why.message}`, param);
    }
    const r = parsed.data;
    if (Array.isArray(r.input) && r.input.some((i) => i.type === 'mcp_approval_response')) return continueAfterApproval(d, req, res, r);
    const keyName = String(res.locals.keyName ?? 'anonymous');
    const history = r.previous_response_id ? await previousConversation(d, r.previous_response_id, keyName) : [];
    const chat = ChatCompletionRequestSchema.safeParse(chatBodyOf(r, history));
    if (!chat.success) {
      const issue = chat.error.issues[0]!;
      throw badRequest(`${issue.message} (${issueParam(issue.path) ?? 'request'}, after translation)`, 'input');
    }
    const run = await launchRun(d, req, res, chat.data, req.body);
    const hex = run.runId.slice(RUN_PREFIX.length);
    const ctx: ResponseContext = { id: responseIdOf(hex, 0), hex, segment: 0, created: Math.floor(Date.now() / 1000), model: r.model, request: r };
    if (r.background && !r.stream) {
      // The run goes on without this request: GET /v1/responses/{id} (with ?stream=true) follows it.
      res.json(responseObject(ctx, null));
      return;
    }
    await answer(res, run.events!, ctx, r.stream === true, d.config.loop.keepaliveSeconds * 1000);
  };
}

function drainOrClose(res: Response): Promise<void> {
  return new Promise((ok) => {
    const done = () => {
      res.off('drain', done);
      res.off('close', done);
      ok();
    };
    res.on('drain', done);
    res.on('close', done);
  });
}

/**
 * Writes the Responses stream: `event: <type>` and `data: {type, sequence_number, …}` per event.
 * The events of a run and their numbers are the same on every reading of its log, so a reader
 * that resumes `after` a sequence number is sent only what follows it.
 */
async function streamResponse(res: Response, events: AsyncGenerator<RunEvent>, ctx: ResponseContext, keepaliveMs: number, after = -1): Promise<void> {
  let seq = 0;
  let started = false;
  let wroteAt = Date.now();
  const frame = (type: string, n: number, data: Record<string, unknown>) => {
    if (!started) {
      started = true;
      res.status(200).setHeader('Content-Type', 'text/event-stream; charset=utf-8');
      res.setHeader('Cache-Control', 'no-cache');
      res.flushHeaders();
    }
    wroteAt = Date.now();
    res.write(`event: ${type}\ndata: ${JSON.stringify({ type, sequence_number: n, ...data })}\n\n`);
  };
  const write = (type: string, data: Record<string, unknown>) => {
    if (seq <= after) {
      seq++;
      return;
    }
    frame(type, seq++, data);
  };
  // During a quiet step (a long tool call) a `keepalive` event, as OpenAI sends on long streams,
  // keeps gateways' idle timers from firing. It repeats the last event's number, so the numbers
  // of a run's events stay the same on every reading (`starting_after` resumes by them).
  const keepalive = setInterval(() => {
    if (Date.now() - wroteAt < keepaliveMs || res.writableEnded || res.writableNeedDrain) return;
    frame('keepalive', Math.max(seq, after + 1) - 1, {});
  }, Math.max(250, keepaliveMs / 4));
  res.once('close', () => clearInterval(keepalive));
  const b = new ResponseBuilder(ctx.hex, ctx.segment, write);
  write('response.created', { response: responseObject(ctx, null) });
  write('response.in_progress', { response: responseObject(ctx, null) });
  try {
    for await (const e of events) {
      if (res.destroyed) return;
      b.take(e);
      if (b.over) break;
      // At the client's pace: nothing more is read from the run while its socket is full.
      if (res.writableNeedDrain) await drainOrClose(res);
    }
  } catch (e) {
    const err = toApiError(e);
    b.error = { status: err.status, message: err.message, type: err.type, code: err.code, param: err.param };
    b.status = 'failed';
  }
  if (b.status === 'cancelled') write('response.cancelled', { response: responseObject(ctx, b) });
  else if (b.status === 'failed' && b.error) {
    write('error', { ...errorBody(b.error).error });
    write('response.failed', { response: responseObject(ctx, b) });
  } else write(b.status === 'incomplete' ? 'response.incomplete' : 'response.completed', { response: responseObject(ctx, b) });
  clearInterval(keepalive);
  res.end();
}

/** A response of the caller's key: its run's handle, description and state (404 otherwise). */
async function loadResponse(d: CompletionDeps, req: Request, res: Response) {
  const id = String(req.params.id);
  const ref = refOf(id);
  const notFound = () => new ApiError(404, `Response with id '${id}' not found.`, 'invalid_request_error', 'response_not_found', 'response_id');
  if (!ref) throw notFound();
  const handle = d.client.workflow.getHandle(ref.runId);
  try {
    const [desc, state] = await Promise.all([handle.describe(), queryRun<RunState>(d.client, handle, STATE_QUERY)]);
    if ((state.keyName ?? 'anonymous') !== String(res.locals.keyName ?? 'anonymous')) throw notFound();
    const ctx: ResponseContext = { id, hex: ref.hex, segment: ref.segment, created: Math.floor(desc.startTime.getTime() / 1000), model: state.model, request: {} };
    return { runId: ref.runId, handle, desc, state, ctx };
  } catch (e) {
    if (e instanceof WorkflowNotFoundError) throw notFound();
    throw e;
  }
}

/**
 * GET /v1/responses/{id}: the response rebuilt from its run's event log (`in_progress` while it
 * runs); with `?stream=true` its stream from the start, or after `starting_after`, live to its end.
 */
export function createGetResponseHandler(d: CompletionDeps) {
  return async (req: Request, res: Response): Promise<void> => {
    const { runId, desc, state, ctx } = await loadResponse(d, req, res);
    if (req.query.stream === 'true') {
      const raw = req.query.starting_after;
      const after = raw === undefined ? -1 : Number(raw);
      if (!Number.isInteger(after) || after < -1) throw badRequest('starting_after must be a sequence number (an integer from 0)', 'starting_after');
      res.once('close', d.limiter.openStream(String(res.locals.keyName ?? 'anonymous')));
      await streamResponse(res, runEvents(d, res, runId), ctx, d.config.loop.keepaliveSeconds * 1000, after);
      return;
    }
    // A run whose answer is in (its workflow may still be closing), or that waits for an
    // approval this response asked for, is read back from its log.
    if (desc.status.name === 'RUNNING' && !state.result && state.pendingApprovals.length === 0) {
      res.json(responseObject(ctx, null));
      return;
    }
    res.json(responseObject(ctx, await collect(runEvents(d, res, runId), new ResponseBuilder(ctx.hex, ctx.segment, () => undefined))));
  };
}

/** POST /v1/responses/{id}/cancel: cancels the run (its compensations run); the response as it ends. */
export function createCancelResponseHandler(d: CompletionDeps) {
  return async (req: Request, res: Response): Promise<void> => {
    const { runId, handle, desc, ctx } = await loadResponse(d, req, res);
    if (desc.status.name !== 'RUNNING') throw new ApiError(409, `Response '${ctx.id}' is not in progress (${desc.status.name.toLowerCase()}).`, 'invalid_request_error', 'response_not_in_progress', 'response_id');
    await handle.cancel();
    res.json(responseObject(ctx, await collect(runEvents(d, res, runId), new ResponseBuilder(ctx.hex, ctx.segment, () => undefined))));
  };
}
