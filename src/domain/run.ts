/**
 * The contract between the API, the workflows and the activities: inputs and results of a
 * run and of one model step. Plain data only: it crosses Temporal's payload converter.
 */
import type { AssistantMessage, ChatMessage, Usage } from './chat';
import type { RunEvent, WireError } from './events';

/** `(after: Position, limit?: number) → RunEvent[]`: the run's durable log after a position. */
export const EVENTS_QUERY = 'mix2api.events';
export const RESULT_QUERY = 'mix2api.result';
export const STATE_QUERY = 'mix2api.state';
/** The run's completed, successful, not undone tool calls (for a retry of the same request). */
export const TOOL_RESULTS_QUERY = 'mix2api.toolResults';
/** Signal (Temporal UI/CLI) and update (API) that decide a pending approval. */
export const APPROVE_SIGNAL = 'approve';
export const APPROVE_UPDATE = 'mix2api.approve';

export interface ApprovalDecision {
  approvalId: string;
  approve: boolean;
  reason?: string;
}

export interface PendingApproval {
  approvalId: string;
  callId: string;
  server: string;
  tool: string;
  arguments: string;
}

/** What GET /v1/runs/{id} shows of a run, open or closed. */
export interface RunState {
  model: string;
  keyName?: string;
  steps: StepRecord[];
  usage?: Usage;
  pendingApprovals: PendingApproval[];
  result: ChatCompletionResult | null;
}

export interface RetrySettings {
  maxAttempts: number;
  initialIntervalSeconds: number;
  maxIntervalSeconds: number;
}

export interface ModelRoute {
  /** The model id the client asked for. */
  exposedModel: string;
  upstream: string;
  upstreamModel: string;
  retry: RetrySettings;
  /** Per attempt. */
  totalSeconds: number;
  continuation: 'none' | 'prefill';
  /** Tried in order when the upstream fails retryably before its first byte. */
  fallbacks?: UpstreamTarget[];
  /** The model's context window (tokens, as ./tokens counts them) and whether a request over it is trimmed. */
  contextTokens?: number;
  trim?: boolean;
  /** Which MCP tools each step offers (absent on runs started before selection). */
  toolSelection?: ToolSelectionSettings;
  toolInstruction?: ToolInstruction;
}

/** `models[].toolInstruction`: said on every step of a run with MCP tools. */
export interface ToolInstruction {
  version: string;
  text: string;
  /** Also the last message every this many steps (0: never). */
  everySteps: number;
}

export interface ToolSelectionSettings {
  strategy: 'rank' | 'all';
  maxTools: number;
  budgetTokens: number;
  schemaTokens: number;
}

/** What a step offered of the run's MCP tools, when it held some back. */
export interface ToolOfferRecord {
  offered: string[];
  heldBack: number;
}

export interface UpstreamTarget {
  upstream: string;
  upstreamModel: string;
}

export interface ChatCompletionInput {
  route: ModelRoute;
  /** The client's request minus `model`, `stream`, `stream_options`: forwarded as is. */
  body: Record<string, unknown>;
  /** Task queue of the API instance holding the client's connection (live deltas). */
  liveTaskQueue?: string;
  maxSteps: number;
  /** `loop.maxModelCalls` / `maxToolCalls` / `maxTokens`: absent on runs with none. */
  budgets?: RunBudgets;
  /** For the Temporal UI: `apiKeyName` of the caller. */
  keyName?: string;
  /** Server-side MCP tools of this run. */
  mcpServers?: RunMcpServer[];
  approvalTimeoutSeconds?: number;
  /** The namespace has mix2api's search attributes (the embedded dev server registers them). */
  searchAttributes?: boolean;
  /**
   * Tool results of an earlier run of the same request that failed: a call with the same
   * server, tool and arguments takes its result from here (once) instead of running again.
   */
  reuseToolResults?: ReusableToolResult[];
  /** A session's last turn's stored upstream response (see StoredResponse). */
  from?: StoredResponse;
}

export interface RunBudgets {
  modelCalls?: number;
  toolCalls?: number;
  tokens?: number;
}

export interface ReusableToolResult {
  callId: string;
  server: string;
  tool: string;
  arguments: string;
  outcome: ToolOutcome;
}

export interface StepRecord {
  step: number;
  kind: 'model' | 'tool' | 'compensation';
  attempt?: number;
  /** Model steps: the upstream that answered, when it was a fallback or the route has fallbacks. */
  upstream?: string;
  finishReason?: string;
  usage?: Usage;
  /** Tool steps. */
  callId?: string;
  arguments?: string;
  server?: string;
  tool?: string;
  ms?: number;
  isError?: boolean;
  /** The result came from an earlier run of the same request (the tool did not run again). */
  reused?: boolean;
  /** Model steps: the MCP tools offered, when tool selection held some back. */
  tools?: ToolOfferRecord;
  /** Model steps: the version of the tool instruction the step was given. */
  instruction?: string;
}

/** Server-side steps a client never saw, kept so its follow-up request can be re-joined. */
export interface HiddenSteps {
  /** Upstream-side transcript of the run: assistant turns with every call, server tool results. */
  messages: ChatMessage[];
  /** Client-facing call id → the model's own call id. */
  callIds: Record<string, string>;
}

export interface ChatCompletionResult {
  id: string;
  created: number;
  model: string;
  message: AssistantMessage;
  finishReason: string;
  usage?: Usage;
  steps: StepRecord[];
  hidden?: HiddenSteps;
  /** The last step's stored upstream response: the session's next turn continues it. */
  stored?: StoredResponse;
}

export interface CallModelInput {
  runId: string;
  step: number;
  upstream: string;
  body: Record<string, unknown>;
  continuation: 'none' | 'prefill';
  /** Tools mix2api runs itself: their calls are not streamed to the client. */
  serverTools?: string[];
  /** Give the client's tool calls ids that name this run (for re-joining hidden steps). */
  runScopedCallIds?: boolean;
  /** What earlier steps contributed, so a step that ends the run can announce the end live. */
  contentSoFar?: string;
  usageSoFar?: Usage;
  /**
   * Set on the shared-queue fallback after the live queue's API instance went away: an attempt
   * there may already have streamed part of this step, and `prior` is what its last heartbeat said.
   */
  resume?: boolean;
  prior?: RunEvent[];
  /**
   * Set when the step moved because the process running it was lost (its lease lapsed): how far
   * that attempt had streamed by its last lease renewal, and a digest of it (see domain/stepLog).
   */
  trace?: { n: number; h: string };
  /** How many times this step has already moved between processes (counted into its attempts). */
  moves?: number;
  fallbacks?: UpstreamTarget[];
  contextTokens?: number;
  trim?: boolean;
  toolSelection?: ToolSelectionSettings;
  toolInstruction?: ToolInstruction;
  /** An earlier step's (or session turn's) stored response that may hold the first messages of this one. */
  from?: StoredResponse;
}

/**
 * A response the upstream stores (Responses `store`): it holds the `messageCount` messages whose
 * digest is `digest` (the request's messages and the answer). A later request to the same
 * upstream that starts with exactly those sends `previous_response_id` and only the rest.
 */
export interface StoredResponse {
  upstream: string;
  responseId: string;
  messageCount: number;
  digest: string;
}

export interface CallModelResult {
  message: AssistantMessage;
  finishReason: string;
  usage?: Usage;
  /** The step's events, every attempt's: what goes into the run's durable log. */
  events: RunEvent[];
  /** First free seq of this step after the model's output. */
  nextSeq: number;
  attempt: number;
  /** The upstream that answered (the route's, or a fallback). */
  upstream?: string;
  /** A response the upstream stores (Responses `store`): the next step or turn can continue it. */
  stored?: StoredResponse;
  /** Messages the context guard left out of this step's request. */
  trimmed?: number;
  /** The MCP tools this step offered, when tool selection held some back. */
  tools?: ToolOfferRecord;
}

/** ApplicationFailure types mix2api raises; the API maps them to HTTP statuses. */
export const FailureType = {
  RateLimit: 'UpstreamRateLimit',
  ServerError: 'UpstreamServerError',
  Timeout: 'UpstreamTimeout',
  Connection: 'UpstreamConnection',
  Rejected: 'UpstreamRejected',
  Protocol: 'UpstreamProtocol',
  Config: 'ConfigError',
  TooLarge: 'StepOutputTooLarge',
  Busy: 'UpstreamBusy',
  Unavailable: 'UpstreamUnavailable',
  ContextLength: 'ContextLengthExceeded',
  /** The process running an activity was lost (its lease lapsed) or is shutting down: run it elsewhere now. */
  ProcessLost: 'ProcessLost',
} as const;

export function wireError(status: number, message: string, type: string, code: string | null = null, param: string | null = null): WireError {
  return { status, message, type, code, param };
}

/** A configured MCP server as one run uses it (from config and the request's `tools`). */
export interface RunMcpServer {
  name: string;
  timeoutSeconds: number;
  maxOutputBytes: number;
  allow?: string[];
  deny?: string[];
  /** MCP tool names that need a human's approval; `*` for all. */
  approval?: string[];
  /** tool → its undo: another tool of the same server, arguments mapped from the call. */
  compensations?: Record<string, { tool: string; args: Record<string, string> }>;
  /** Its calls are not repeated after an interruption that leaves unknown whether they acted. */
  unsafe?: true;
}

export interface ListToolsInput {
  servers: Array<Pick<RunMcpServer, 'name' | 'allow' | 'deny'>>;
  /** Tools already in the request (client tools) count towards the upstream's limit. */
  clientToolCount: number;
  /**
   * Each step selects what it offers (`toolSelection: rank`): the catalog may be larger than an
   * upstream takes in one request, up to MAX_SELECTABLE_TOOLS.
   */
  selecting?: boolean;
}

export interface CallToolInput {
  runId: string;
  callId: string;
  /** Sent in the MCP request `_meta`; the same on every retry of this call. */
  idempotencyKey: string;
  server: string;
  tool: string;
  /** The model's arguments, as the JSON text it produced. */
  arguments: string;
  inputSchema: Record<string, unknown>;
  timeoutSeconds: number;
  maxOutputBytes: number;
}

/** Whether a call of `tool` on `server` waits for a human decision first. */
export function approvalNeeded(server: Pick<RunMcpServer, 'approval'>, tool: string): boolean {
  return (server.approval ?? []).some((t) => t === '*' || t === tool);
}

/** The id of an MCP gateway call's one approval (a call asks at most once). */
export const GATEWAY_APPROVAL_ID = 'apr_0_0';

export interface ToolOutcome {
  text: string;
  isError: boolean;
  truncated: boolean;
  ms: number;
  /** The tool's `structuredContent`, for compensation argument mappings. */
  structured?: unknown;
}

export const SESSION_TURN_UPDATE = 'mix2api.turn';
export const SESSION_QUERY = 'mix2api.session';

export interface SessionInput {
  sessionId: string;
  keyName?: string;
  /** Turns run so far, across continue-as-new. */
  turns?: number;
  /** Recent run ids, across continue-as-new. */
  runs?: string[];
  /** A session with no turn for this long completes. */
  idleSeconds: number;
  /** The key's ledger workflow: the session hands its lease back there when it completes. */
  ledger?: string;
  /** The last turn's stored upstream response, across continue-as-new. */
  stored?: StoredResponse;
}

export interface SessionTurn {
  runId: string;
  input: ChatCompletionInput;
}

export interface SessionState {
  sessionId: string;
  turns: number;
  busy: string | null;
  runs: string[];
}

/** Longest a tool call may run with progress; the activity's start-to-close is 30 s above it. */
export function toolTotalSeconds(timeoutSeconds: number): number {
  return Math.ceil(timeoutSeconds) * 2;
}

/**
 * Tool calls heartbeat every 2 s (their cancellation rides on it). A lost process is noticed by
 * its lease (activities/lease) within `liveness.lapseSeconds`; this backs that up: a call taken
 * in the few ms before a kill, before a renewal named it, or one hung in a process whose lease holds.
 */
export const HEARTBEAT_TIMEOUT = '8 seconds';
