/**
 * The one configuration schema: the YAML file plus env overrides, validated once at boot.
 * Every default and limit named in docs/configuration.md lives here.
 */
import { z } from 'zod';
import { McpServerSchema } from './mcpSchema';

const seconds = (def: number, max: number) => z.number().positive().max(max).default(def);

/**
 * What one API key may use (0 = unlimited, the default for each: behind an edge gateway one key
 * carries every user's traffic, and the gateway limits its users). `concurrentRuns` and `sessions` hold across replicas
 * (counted by the key's ledger workflow: exact within a process, near-exact across processes, see
 * docs/design.md); `requestsPerMinute` and `openStreams` per API process.
 */
const limitFields = {
  requestsPerMinute: z.number().int().min(0).max(1_000_000),
  concurrentRuns: z.number().int().min(0).max(100_000),
  sessions: z.number().int().min(0).max(100_000),
  openStreams: z.number().int().min(0).max(100_000),
};

export const LimitsSchema = z
  .object({
    requestsPerMinute: limitFields.requestsPerMinute.default(0),
    concurrentRuns: limitFields.concurrentRuns.default(0),
    sessions: limitFields.sessions.default(0),
    openStreams: limitFields.openStreams.default(0),
  })
  .strict();

/** A key's own limits: only those it names replace `server.limits`. */
const KeyLimitsSchema = z.object(limitFields).partial().strict();

export const ApiKeySchema = z.object({
  name: z.string().min(1).max(64),
  /** The key itself, `env:VAR`, or `sha256:<hex>` of the key. */
  key: z
    .string()
    .min(1)
    .refine((k) => !k.startsWith('sha256:') || /^sha256:[0-9a-f]{64}$/i.test(k), 'sha256: must be followed by 64 hex digits'),
  /** This key's own limits, over `server.limits`. */
  limits: KeyLimitsSchema.optional(),
  /** The MCP servers this key sees through the MCP gateway (`/mcp`); default: every configured one. */
  gatewayServers: z.array(z.string().min(1)).optional(),
});

export const ServerSchema = z
  .object({
    port: z.number().int().min(0).max(65535).default(8080),
    /**
     * What instances present to each other when one reads a model step another streams
     * (/internal/v1/steps). Default: derived from the namespace, task queue, API keys and
     * encryption keys, so instances with the same config agree.
     */
    peerSecret: z.string().min(16).optional(),
    /** Default: 0.0.0.0 when API keys are configured, 127.0.0.1 when none are. */
    host: z.string().optional(),
    /**
     * A key's name is its identity: runs, sessions and idempotency keys are scoped by it, so names
     * are unique, and `anonymous` (what callers are when no keys are configured) is reserved.
     */
    apiKeys: z
      .array(ApiKeySchema)
      .default([])
      .superRefine((keys, ctx) => {
        const seen = new Set<string>();
        keys.forEach((k, i) => {
          if (k.name === 'anonymous') ctx.addIssue({ code: 'custom', path: [i, 'name'], message: '"anonymous" is reserved (it names callers when no keys are configured)' });
          if (seen.has(k.name)) ctx.addIssue({ code: 'custom', path: [i, 'name'], message: `duplicate key name "${k.name}": names scope runs and sessions, so each key needs its own` });
          seen.add(k.name);
        });
      }),
    /** The request becomes the run's input, and Temporal refuses payloads over 2 MB. */
    maxRequestBytes: z.number().int().positive().max(2 * 1024 * 1024).default(1536 * 1024),
    /** A client must send its request headers within this long (slow-loris guard)… */
    headersTimeoutSeconds: z.number().positive().max(300).default(10),
    /** …and the whole request, body included, within this long. Answers may take as long as they need. */
    requestTimeoutSeconds: z.number().positive().max(3600).default(30),
    /** Every key's limits (and the caller's when no keys are configured); a key's `limits` override them. */
    limits: LimitsSchema.default(LimitsSchema.parse({})),
    /** Listen beyond loopback without API keys. Off: an open proxy to your upstream is a mistake. */
    allowUnauthenticated: z.boolean().default(false),
  })
  .strict()
  .refine((s) => s.headersTimeoutSeconds <= s.requestTimeoutSeconds, { message: 'headersTimeoutSeconds must not exceed requestTimeoutSeconds', path: ['headersTimeoutSeconds'] });

export const TemporalSchema = z
  .object({
    /** `embedded` starts a local dev server (only with `mix2api start`); otherwise host:port. */
    address: z.string().default('embedded'),
    namespace: z.string().default('default'),
    taskQueue: z.string().default('mix2api'),
    /** Embedded dev server only. */
    port: z.number().int().min(1).max(65535).default(7233),
    uiPort: z.number().int().min(1).max(65535).default(8233),
    /** Where the embedded dev server serves its own Prometheus `/metrics` (Temporal's server metrics); default: off. */
    metricsPort: z.number().int().min(1).max(65535).optional(),
    dataDir: z.string().default('.data'),
    headless: z.boolean().default(false),
    /**
     * Set Mix2apiModel / Mix2apiKeyName / Mix2apiTools on runs. Default: on with the embedded dev
     * server (which registers them); on a cluster, register them first, then turn this on.
     */
    searchAttributes: z.boolean().optional(),
    /** External cluster auth (Temporal Cloud and friends). */
    apiKey: z.string().optional(),
    tls: z.boolean().default(false),
  })
  .strict();

export const UpstreamSchema = z
  .object({
    name: z.string().regex(/^[a-zA-Z0-9_.-]{1,64}$/, 'letters, digits, _ . - (1-64)'),
    /**
     * The upstream's API. `baseURL` is what that vendor's SDK takes: `https://api.openai.com/v1`
     * for the OpenAI dialects, `https://api.anthropic.com` for Anthropic, and
     * `https://generativelanguage.googleapis.com` for Gemini.
     */
    api: z.enum(['openai-chat', 'anthropic-messages', 'gemini', 'openai-responses']).default('openai-chat'),
    baseURL: z.url({ protocol: /^https?$/ }),
    apiKey: z.string().optional(),
    headers: z.record(z.string(), z.string()).default({}),
    timeouts: z
      .object({
        /** Until the response headers arrive. */
        connectSeconds: seconds(30, 600),
        /** Longest silence between two streamed chunks. */
        idleSeconds: seconds(60, 3600),
        /** One whole upstream call (one attempt). */
        totalSeconds: seconds(600, 7200),
      })
      .strict()
      .default({ connectSeconds: 30, idleSeconds: 60, totalSeconds: 600 }),
    retry: z
      .object({
        maxAttempts: z.number().int().min(1).max(20).default(4),
        initialIntervalSeconds: seconds(1, 300),
        maxIntervalSeconds: seconds(30, 3600),
      })
      .strict()
      .default({ maxAttempts: 4, initialIntervalSeconds: 1, maxIntervalSeconds: 30 }),
    /** `prefill`: a retried call continues from the content already streamed (assistant prefill). */
    continuation: z.enum(['none', 'prefill']).default('none'),
    /** Calls in flight to this upstream at once, per worker process (0 = no cap). */
    maxConcurrent: z.number().int().min(0).max(100_000).default(0),
    /** How long a call over `maxConcurrent` waits for a slot before it fails as `upstream_busy`. */
    queueSeconds: z.number().min(0).max(600).default(10),
    /** Per worker process: open after `failures` consecutive retryable failures (0 = no breaker), probe after `cooldownSeconds`. */
    breaker: z
      .object({ failures: z.number().int().min(0).max(1000).default(5), cooldownSeconds: z.number().positive().max(3600).default(30) })
      .strict()
      .default({ failures: 5, cooldownSeconds: 30 }),
    /** `anthropic-messages`: prompt-caching breakpoints on tools, system and the conversation so far. */
    cachePrompts: z.boolean().default(true),
    /**
     * `openai-responses`: store responses upstream (`store: true`), so a step that continues an
     * earlier one sends `previous_response_id` and only the new messages.
     */
    storeResponses: z.boolean().default(false),
  })
  .strict()
  .refine((u) => u.continuation === 'none' || u.api === 'openai-chat' || u.api === 'anthropic-messages', {
    message: '`continuation: prefill` needs an upstream that continues an assistant prefill (openai-chat or anthropic-messages)',
    path: ['continuation'],
  });

/**
 * Which of a run's MCP tools each model step offers. `rank` (the default): every tool while
 * they all fit `maxTools` and `budgetTokens` as they are; past that, the ones the conversation
 * has called, then the most relevant by BM25, their schemas trimmed, within those limits.
 * `all`: every tool on every step, up to OpenAI's 128 (more is a 400 `too_many_tools`).
 * Client (function) tools are always sent as the client sent them.
 */
export const ToolSelectionSchema = z
  .object({
    strategy: z.enum(['rank', 'all']).default('rank'),
    /** Most tools one step sends (client tools included); at most OpenAI's 128. */
    maxTools: z.number().int().min(1).max(128).default(64),
    /** Most estimated tokens the offered MCP tools' definitions take in one step. */
    budgetTokens: z.number().int().min(100).default(8000),
    /** Once selecting, each MCP tool's parameters schema is trimmed toward this many tokens. */
    schemaTokens: z.number().int().min(20).default(400),
  })
  .strict();

export const ModelSchema = z
  .object({
    id: z.string().min(1).max(128),
    upstream: z.string(),
    /** Upstream model name; defaults to `id`. */
    model: z.string().optional(),
    /**
     * Tried in order when the upstream (or the one before) fails retryably before its first
     * byte (connect error, 5xx, 429, overload, timeout to first token, busy, breaker open).
     */
    fallbacks: z.array(z.object({ upstream: z.string(), model: z.string().optional() }).strict()).max(8).default([]),
    /**
     * The model's context window in tokens (counted with OpenAI's encoding for OpenAI's models,
     * else estimated as UTF-8 bytes / 4: domain/tokens). A request over it has its oldest turns
     * trimmed (`trim: true`, the default) or is refused with 400 `context_length_exceeded`.
     */
    contextTokens: z.number().int().positive().optional(),
    trim: z.boolean().default(true),
    mcpServers: z.array(z.string()).default([]),
    toolSelection: ToolSelectionSchema.default(ToolSelectionSchema.parse({})),
    /**
     * Said to the model on every step of a run with MCP tools (after the client's own system
     * messages), and again as the last message every `everySteps` steps of a long loop, so the
     * model keeps the tool protocol. Its `version` is recorded on each model step of the run.
     */
    toolInstruction: z
      .object({
        version: z.string().min(1).max(64),
        text: z.string().min(1).max(8000),
        everySteps: z.number().int().min(0).max(256).default(0),
      })
      .strict()
      .optional(),
  })
  .strict();

export const LoopSchema = z
  .object({
    maxSteps: z.number().int().min(1).max(256).default(16),
    progress: z.enum(['reasoning', 'content', 'none']).default('reasoning'),
    keepaliveSeconds: z.number().positive().max(300).default(10),
    /**
     * The keepalive chunk's delta: `reasoning` (`{"reasoning_content":""}`, the one form LiteLLM
     * forwards) or `empty` (`{}`, dropped by LiteLLM).
     */
    keepalive: z.enum(['reasoning', 'empty']).default('reasoning'),
    onDisconnect: z.enum(['continue', 'cancel']).default('continue'),
    /** A tool call waiting for approval is denied after this long. */
    approvalTimeoutSeconds: z.number().positive().max(30 * 24 * 3600).default(900),
    /**
     * Budgets per run (unset: none). A run that reaches one ends with `run_budget_exceeded`,
     * its tool calls compensated as on a cancel. Model calls count every upstream attempt
     * (retries and fallbacks too); tool calls count every server-side call the model asked for;
     * tokens are prompt + completion over the whole loop, as the upstream reported them.
     */
    maxModelCalls: z.number().int().min(1).max(10_000).optional(),
    maxToolCalls: z.number().int().min(0).max(100_000).optional(),
    maxTokens: z.number().int().min(1).optional(),
  })
  .strict();

export const StreamSchema = z
  .object({
    /** How often a reader follows a model step that streams in another process (its progress is asked of that process). */
    heartbeatSeconds: z.number().min(0.5).max(6).default(2),
    /** A client that reads nothing for this long gets an error chunk and is cut off (its run goes on). */
    stallSeconds: z.number().positive().max(3600).default(60),
    /**
     * Usage on the finish chunk of a stream whose client did not ask for it
     * (`stream_options.include_usage`), so an edge gateway bills what the upstream counted.
     */
    usageOnFinish: z.boolean().default(true),
  })
  .strict();

export const IdempotencySchema = z
  .object({
    /**
     * A request with server-side MCP tools and no Idempotency-Key is keyed by its API key and
     * body for this long (0: off), so an edge gateway's retry of it (LiteLLM retries three
     * times, the same body, no key) never runs a completed tool call again: a retry of a running
     * run joins it, a retry of a failed one is a new run that takes the earlier run's completed
     * tool results. The same body after a completed answer is a new run (a regenerate).
     */
    implicitSeconds: z.number().int().min(0).max(24 * 3600).default(300),
    /**
     * With implicit keys on: the same body after a completed answer gets that answer again
     * (a gateway's retry after a lost response) instead of a new run. Off by default, so a chat
     * UI's regenerate gets a fresh answer.
     */
    replayCompleted: z.boolean().default(false),
  })
  .strict();

export const SessionsSchema = z
  .object({
    /** A session actor with no turn for this long completes (its runs stay readable). */
    idleSeconds: z.number().int().positive().max(30 * 24 * 3600).default(3600),
  })
  .strict();

export const MetricsSchema = z
  .object({
    /** `GET /metrics` on the API port (unauthenticated, like /healthz). */
    enabled: z.boolean().default(true),
    /** A listener of its own for `/metrics` (how a `mix2api worker` is scraped); none by default. */
    port: z.number().int().min(1).max(65535).optional(),
    /** The address that listener binds (default: the API's, server.host or its default). /metrics holds no secrets, so no key is needed to bind it beyond loopback. */
    host: z.string().min(1).optional(),
    /** Fold the Temporal SDK's worker metrics (`temporal_*`) into `/metrics`. */
    temporal: z.boolean().default(true),
  })
  .strict();

export const LoggingSchema = z
  .object({
    level: z.enum(['debug', 'info', 'warn', 'error', 'silent']).default('info'),
    /** `auto`: human-readable when stdout is a terminal, JSON lines otherwise. */
    format: z.enum(['auto', 'json', 'pretty']).default('auto'),
  })
  .strict();

export const EncryptionSchema = z
  .object({
    /**
     * AES-256-GCM keys for Temporal payloads: each 32 bytes, base64 (or `env:VAR`). The first
     * encrypts; all decrypt. None (the default): payloads are stored as plain JSON.
     */
    keys: z
      .array(z.object({ id: z.string().regex(/^[A-Za-z0-9._-]{1,64}$/, 'letters, digits, . _ - (at most 64)'), key: z.string().min(1) }).strict())
      .max(16)
      .default([])
      .superRefine((keys, ctx) => {
        const seen = new Set<string>();
        keys.forEach((k, i) => {
          if (seen.has(k.id)) ctx.addIssue({ code: 'custom', path: [i, 'id'], message: `duplicate key id "${k.id}"` });
          seen.add(k.id);
        });
      }),
    /** Browser origins (a Temporal Web UI's) allowed to call `/codec`; the embedded UI's is always allowed. */
    codecCorsOrigins: z.array(z.string().url()).default([]),
  })
  .strict();

export const McpGatewaySchema = z
  .object({
    /** `/mcp`: the configured MCP servers' tools for any MCP client, behind the API keys. */
    enabled: z.boolean().default(true),
    /** Browser origins allowed to call `/mcp` (a request with another Origin is refused: DNS rebinding). */
    allowedOrigins: z.array(z.string().min(1)).default([]),
    /** While sessions are open, the catalog is read again at this pace; a changed tool list is announced to them (notifications/tools/list_changed). 0: never. */
    listChangedPollSeconds: z.number().min(0).default(30),
  })
  .strict();

/**
 * Liveness per process: each process holds one lease in Temporal and renews it this often; its
 * open model steps and tool calls need no heartbeat of their own. A lease not renewed for
 * `lapseSeconds` lapses, and everything its process ran moves to a live process at once.
 */
export const LivenessSchema = z
  .object({
    renewSeconds: z.number().min(0.2).max(10).default(1),
    lapseSeconds: z.number().min(1).max(60).default(2.5),
  })
  .strict()
  .refine((l) => l.lapseSeconds >= 2 * l.renewSeconds, { message: 'liveness.lapseSeconds must be at least twice liveness.renewSeconds' });

export const ConfigFileSchema = z
  .object({
    server: ServerSchema.default(ServerSchema.parse({})),
    temporal: TemporalSchema.default(TemporalSchema.parse({})),
    upstreams: z.array(UpstreamSchema).default([]),
    models: z.array(ModelSchema).default([]),
    loop: LoopSchema.default(LoopSchema.parse({})),
    stream: StreamSchema.default(StreamSchema.parse({})),
    liveness: LivenessSchema.default(LivenessSchema.parse({})),
    sessions: SessionsSchema.default(SessionsSchema.parse({})),
    idempotency: IdempotencySchema.default(IdempotencySchema.parse({})),
    mcpServers: z.array(McpServerSchema).default([]),
    metrics: MetricsSchema.default(MetricsSchema.parse({})),
    logging: LoggingSchema.default(LoggingSchema.parse({})),
    encryption: EncryptionSchema.default(EncryptionSchema.parse({})),
    mcpGateway: McpGatewaySchema.default(McpGatewaySchema.parse({})),
  })
  .strict();

export type ConfigFile = z.infer<typeof ConfigFileSchema>;
export type UpstreamConfig = z.infer<typeof UpstreamSchema>;
export type ModelConfig = z.infer<typeof ModelSchema>;
export type ApiKeyConfig = z.infer<typeof ApiKeySchema>;
export type LimitsConfig = z.infer<typeof LimitsSchema>;
