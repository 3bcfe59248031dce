/**
 * The observability stack of docker-compose.yml and deploy/: the compose file against the Compose
 * specification's schema, the files it mounts, mix2api's own config as each service's environment
 * makes it, Prometheus's targets, the collector's pipelines, and the Grafana dashboard's queries
 * against the metric families mix2api registers. Each check is also run on a broken copy.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, posix, resolve } from 'node:path';
import Ajv from 'ajv';
import YAML from 'yaml';
import { ConfigError, parseConfig, type Config } from '../../src/config/load';
import { Metrics } from '../../src/telemetry/metrics';

const root = resolve(__dirname, '../..');
const read = (p: string) => readFileSync(join(root, p), 'utf8');
const clone = <T>(v: T): T => structuredClone(v);

// ---- docker-compose.yml ----

type Volume = string | { type?: string; source?: string; target: string };
interface Service {
  image?: string;
  build?: unknown;
  command?: string | string[];
  environment?: Record<string, string | number | boolean | null> | string[];
  ports?: Array<string | number | { target: number; published?: string | number }>;
  volumes?: Volume[];
  depends_on?: string[] | Record<string, unknown>;
  configs?: Array<string | { source: string }>;
}
interface Compose {
  services: Record<string, Service>;
  volumes?: Record<string, unknown>;
  configs?: Record<string, unknown>;
}

/** The values clients run it with: `${MIX2API_API_KEY:?…}` must be set. */
const ENV: Record<string, string> = { MIX2API_API_KEY: 'test-key' };

/** Compose interpolation: `$$`, `$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR-default}`, `${VAR:?error}`, `${VAR?error}`. */
function interpolate(s: string, env: Record<string, string>): string {
  return s.replace(/\$\$|\$\{([A-Za-z_]\w*)(?:(:?[-?])([^}]*))?\}|\$([A-Za-z_]\w*)/g, (m, name: string | undefined, op: string | undefined, arg: string | undefined, bare: string | undefined) => {
    if (m === '$$') return '$';
    if (bare) return env[bare] ?? '';
    const v = env[name!];
    if (!op) return v ?? '';
    const unset = v === undefined || (op.startsWith(':') && v === '');
    if (op.endsWith('-')) return unset ? arg! : v!;
    if (unset) throw new Error(`${name}: ${arg}`);
    return v!;
  });
}

function interpolateAll<T>(v: T, env: Record<string, string>): T {
  if (typeof v === 'string') return interpolate(v, env) as T;
  if (Array.isArray(v)) return v.map((x: unknown) => interpolateAll(x, env)) as T;
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, interpolateAll(x, env)])) as T;
  return v;
}

const compose = interpolateAll(YAML.parse(read('docker-compose.yml')) as Compose, ENV);

function envOf(s: Service): Record<string, string> {
  const e = s.environment ?? {};
  if (Array.isArray(e)) return Object.fromEntries(e.map((kv) => [kv.split('=')[0]!, kv.slice(kv.indexOf('=') + 1)]));
  return Object.fromEntries(Object.entries(e).map(([k, v]) => [k, v == null ? '' : String(v)]));
}

/** Bind mounts as {source (relative to the repo), target}. */
function mounts(s: Service): Array<{ source: string; target: string }> {
  const out: Array<{ source: string; target: string }> = [];
  for (const v of s.volumes ?? []) {
    const [source, target] = typeof v === 'string' ? v.split(':') : [v.source ?? '', v.target];
    if (source && target && (source.startsWith('.') || source.startsWith('/'))) out.push({ source: posix.normalize(source), target });
  }
  return out;
}

/** Where in the container a file of this repo is mounted, directly or inside a mounted folder. */
function mountedAt(s: Service, file: string): string | undefined {
  for (const m of mounts(s)) {
    if (m.source === file) return m.target;
    if (file.startsWith(`${m.source}/`)) return posix.join(m.target, file.slice(m.source.length + 1));
  }
  return undefined;
}

function composeSchemaValidator() {
  let dir: string;
  try {
    dir = dirname(require.resolve('dclint/package.json'));
  } catch {
    throw new Error('the Compose specification JSON schema comes from the dclint package (schemas/compose.schema.json): add dclint to devDependencies');
  }
  const schema = JSON.parse(readFileSync(join(dir, 'schemas', 'compose.schema.json'), 'utf8')) as Record<string, unknown>;
  delete schema.$schema;
  // Compose's own formats (durations, ports) are checked by Compose; the structure is what matters here.
  const validate = new Ajv({ allErrors: true, strict: false, validateFormats: false }).compile(schema);
  return (doc: unknown): string[] => (validate(doc) ? [] : (validate.errors ?? []).map((e) => `${e.instancePath || '/'} ${e.message ?? ''} ${JSON.stringify(e.params)}`));
}

function composeProblems(c: Compose): string[] {
  const problems: string[] = [];
  const services = new Set(Object.keys(c.services));
  const published = new Map<number, string>();
  for (const [name, s] of Object.entries(c.services)) {
    if (!s.image && !s.build) problems.push(`${name}: neither image nor build`);
    if (s.image && (!/:[^/:]+$|@sha256:/.test(s.image) || s.image.endsWith(':latest'))) problems.push(`${name}: image ${s.image} has no pinned tag`);
    const deps = Array.isArray(s.depends_on) ? s.depends_on : Object.keys(s.depends_on ?? {});
    for (const d of deps) if (!services.has(d)) problems.push(`${name}: depends_on names no service "${d}"`);
    for (const p of s.ports ?? []) {
      const spec = typeof p === 'object' ? `${p.published ?? ''}:${p.target}` : String(p);
      const parts = spec.replace(/\/(tcp|udp)$/, '').split(':');
      const nums = parts.slice(-2).filter((x) => x !== '');
      if (nums.length === 0 || !nums.every((x) => /^\d+$/.test(x) && Number(x) >= 1 && Number(x) <= 65535)) problems.push(`${name}: port "${spec}" is not [host:]container`);
      else if (nums.length === 2) {
        const host = Number(nums[0]);
        if (published.has(host)) problems.push(`${name}: host port ${host} is also published by ${published.get(host)}`);
        published.set(host, name);
      }
    }
    for (const v of s.volumes ?? []) {
      const source = typeof v === 'string' ? v.split(':')[0]! : (v.source ?? '');
      if (!source || source.startsWith('.') || source.startsWith('/')) continue;
      if (!(source in (c.volumes ?? {}))) problems.push(`${name}: volume "${source}" is not declared`);
    }
    for (const m of mounts(s)) if (!existsSync(join(root, m.source))) problems.push(`${name}: mounts ${m.source}, which does not exist`);
    for (const cfg of s.configs ?? []) {
      const source = typeof cfg === 'string' ? cfg : cfg.source;
      if (!(source in (c.configs ?? {}))) problems.push(`${name}: config "${source}" is not declared`);
    }
  }
  return problems;
}

/** The mix2api services: built from this repo, role from the command. */
const mix2apiServices = (c: Compose) =>
  Object.entries(c.services)
    .filter(([, s]) => s.build !== undefined)
    .map(([name, s]) => ({ name, role: (Array.isArray(s.command) ? s.command[0] : s.command?.split(/\s+/)[0]) ?? 'start', env: envOf(s) }));

/** mix2api's own config from a service's environment (no config file), as the container would load it. */
function configOf(env: Record<string, string>): Config {
  const { MIX2API_CONFIG: _file, ...rest } = env;
  return parseConfig({}, rest);
}

/** Where a mix2api service serves /metrics to other containers, or why it does not. */
function metricsEndpoint(role: string, env: Record<string, string>): { port: number } | { problem: string } {
  let c: Config;
  try {
    c = configOf(env);
  } catch (e) {
    return { problem: e instanceof ConfigError ? e.problems.join('; ') : String(e) };
  }
  if (!c.metrics.enabled) return { problem: 'metrics.enabled is false' };
  const port = c.metrics.port ?? (role === 'worker' ? undefined : c.server.port);
  if (!port) return { problem: 'a worker serves /metrics only with METRICS_PORT' };
  const apiHost = c.server.host ?? (c.server.apiKeys.length > 0 ? '0.0.0.0' : '127.0.0.1');
  const host = (c.metrics.port ? c.metrics.host : undefined) ?? apiHost;
  if (host === 'localhost' || host.startsWith('127.') || host === '::1') return { problem: `/metrics listens on ${host}, out of other containers' reach` };
  return { port };
}

// ---- deploy/prometheus.yml ----

interface ScrapeConfig {
  job_name: string;
  metrics_path?: string;
  static_configs?: Array<{ targets: string[] }>;
  dns_sd_configs?: Array<{ names: string[]; type?: string; port?: number }>;
}
interface PrometheusConfig {
  scrape_configs: ScrapeConfig[];
}

const prometheus = YAML.parse(read('deploy/prometheus.yml')) as PrometheusConfig;

function targets(j: ScrapeConfig): Array<{ host: string; port: number }> {
  const statics = (j.static_configs ?? []).flatMap((s) => s.targets).map((t) => ({ host: t.slice(0, t.lastIndexOf(':')), port: Number(t.slice(t.lastIndexOf(':') + 1)) }));
  const dns = (j.dns_sd_configs ?? []).flatMap((d) => d.names.map((host) => ({ host, port: d.port ?? NaN })));
  return [...statics, ...dns];
}

/** The ports each compose service serves metrics on. */
function metricsPorts(c: Compose): Map<string, number> {
  const out = new Map<string, number>();
  for (const m of mix2apiServices(c)) {
    const e = metricsEndpoint(m.role, m.env);
    if ('port' in e) out.set(m.name, e.port);
  }
  for (const [name, s] of Object.entries(c.services)) {
    const ep = envOf(s).PROMETHEUS_ENDPOINT; // the Temporal server's
    if (ep) out.set(name, Number(ep.slice(ep.lastIndexOf(':') + 1)));
  }
  return out;
}

function prometheusProblems(p: PrometheusConfig, c: Compose): string[] {
  const problems: string[] = [];
  const ports = metricsPorts(c);
  const scraped = new Set<string>();
  const jobs = p.scrape_configs.map((j) => j.job_name);
  if (new Set(jobs).size !== jobs.length) problems.push('job names are not unique');
  for (const j of p.scrape_configs) {
    const ts = targets(j);
    if (ts.length === 0) problems.push(`${j.job_name}: no targets`);
    for (const t of ts) {
      if (t.host === 'localhost' && j.job_name === 'prometheus' && t.port === 9090) continue;
      if (!(t.host in c.services)) problems.push(`${j.job_name}: ${t.host} is not a compose service`);
      else if (ports.get(t.host) !== t.port) problems.push(`${j.job_name}: ${t.host}:${t.port}, but ${t.host} serves metrics on ${ports.get(t.host) ?? 'no port'}`);
      else scraped.add(t.host);
    }
  }
  for (const m of mix2apiServices(c)) {
    const e = metricsEndpoint(m.role, m.env);
    if ('problem' in e) problems.push(`${m.name}: ${e.problem}`);
  }
  for (const name of ports.keys()) if (!scraped.has(name)) problems.push(`${name} serves metrics that no job scrapes`);
  const svc = c.services.prometheus;
  if (!svc || mountedAt(svc, 'deploy/prometheus.yml') !== '/etc/prometheus/prometheus.yml') problems.push('the prometheus service does not load deploy/prometheus.yml');
  return problems;
}

// ---- deploy/otel-collector.yaml ----

type Components = Record<string, Record<string, unknown> | null>;
interface CollectorConfig {
  receivers?: Components;
  processors?: Components;
  exporters?: Components;
  connectors?: Components;
  extensions?: Components;
  service: { extensions?: string[]; pipelines: Record<string, { receivers?: string[]; processors?: string[]; exporters?: string[] }> };
}

const collector = YAML.parse(read('deploy/otel-collector.yaml')) as CollectorConfig;

function collectorProblems(o: CollectorConfig, c: Compose): string[] {
  const problems: string[] = [];
  const connectors = Object.keys(o.connectors ?? {});
  const used = new Set<string>();
  for (const [name, p] of Object.entries(o.service.pipelines)) {
    if (!/^(traces|metrics|logs)(\/[\w-]+)?$/.test(name)) problems.push(`pipeline ${name}: not traces, metrics or logs`);
    if (!p.receivers?.length || !p.exporters?.length) problems.push(`pipeline ${name}: needs receivers and exporters`);
    for (const kind of ['receivers', 'processors', 'exporters'] as const) {
      for (const id of p[kind] ?? []) {
        used.add(`${kind}:${id}`);
        const defined = id in (o[kind] ?? {}) || (kind !== 'processors' && connectors.includes(id));
        if (!defined) problems.push(`pipeline ${name}: ${kind} "${id}" is not defined`);
      }
    }
  }
  for (const id of o.service.extensions ?? []) if (!(id in (o.extensions ?? {}))) problems.push(`extension "${id}" is not defined`);
  for (const kind of ['receivers', 'exporters'] as const) for (const id of Object.keys(o[kind] ?? {})) if (!used.has(`${kind}:${id}`)) problems.push(`${kind} "${id}" is in no pipeline`);
  // Exporters' endpoints name compose services.
  for (const [id, e] of Object.entries(o.exporters ?? {})) {
    const endpoint = typeof e?.endpoint === 'string' ? e.endpoint : undefined;
    const host = endpoint?.replace(/^\w+:\/\//, '').split(/[:/]/)[0];
    if (host && !(host in c.services)) problems.push(`exporter ${id}: ${host} is not a compose service`);
  }
  // Where mix2api sends its traces: OTLP/HTTP to a port the collector's otlp receiver listens on.
  const httpEndpoint = ((o.receivers?.otlp as { protocols?: { http?: { endpoint?: string } } } | undefined)?.protocols?.http?.endpoint) ?? '';
  const httpPort = Number(httpEndpoint.slice(httpEndpoint.lastIndexOf(':') + 1));
  const collectorName = Object.keys(c.services).find((n) => mountedAt(c.services[n]!, 'deploy/otel-collector.yaml'));
  if (!collectorName) problems.push('no service loads deploy/otel-collector.yaml');
  else if (mountedAt(c.services[collectorName]!, 'deploy/otel-collector.yaml') !== '/etc/otelcol-contrib/config.yaml') problems.push(`${collectorName}: deploy/otel-collector.yaml is not at the image's default config path`);
  for (const m of mix2apiServices(c)) {
    let cfg: Config;
    try {
      cfg = configOf(m.env);
    } catch {
      continue; // reported with the metrics endpoints
    }
    if (!cfg.tracing.enabled) {
      problems.push(`${m.name}: trace export is off`);
      continue;
    }
    const url = new URL(m.env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT || m.env.OTEL_EXPORTER_OTLP_ENDPOINT || '');
    if (url.hostname !== collectorName || Number(url.port) !== httpPort) problems.push(`${m.name}: sends traces to ${url.host}, not to ${collectorName}:${httpPort} (the otlp receiver's http endpoint)`);
  }
  return problems;
}

// ---- Grafana ----

interface Target {
  expr?: string;
  refId?: string;
  legendFormat?: string;
  datasource?: { type?: string; uid?: string };
}
interface Panel {
  id?: number;
  type: string;
  title?: string;
  gridPos?: { x: number; y: number; w: number; h: number };
  datasource?: { type?: string; uid?: string } | null;
  targets?: Target[];
  panels?: Panel[];
}
interface Variable {
  type: string;
  name: string;
  query?: string | { query?: string };
  datasource?: { type?: string; uid?: string };
}
interface Dashboard {
  uid?: string;
  title?: string;
  schemaVersion?: number;
  __inputs?: Array<{ name: string; type: string; pluginId?: string }>;
  templating?: { list: Variable[] };
  panels: Panel[];
}

const dashboard = JSON.parse(read('deploy/grafana/mix2api-dashboard.json')) as Dashboard;

interface Family {
  type: 'counter' | 'gauge' | 'histogram';
  labels: readonly string[];
}

/**
 * The Temporal SDK's worker metrics as its Runtime's Prometheus exporter serves them with the
 * options mix2api installs (`countersTotalSuffix`, `unitSuffix`, `useSecondsForDurations`) in
 * @temporalio/worker 1.23: counters carry no `_total`. Only the families the dashboard may use.
 */
const TEMPORAL_SDK: Record<string, Family> = {
  temporal_workflow_task_schedule_to_start_latency_seconds: { type: 'histogram', labels: ['namespace', 'service_name', 'task_queue'] },
  temporal_workflow_task_execution_latency_seconds: { type: 'histogram', labels: ['namespace', 'service_name', 'task_queue', 'workflow_type'] },
  temporal_workflow_endtoend_latency_seconds: { type: 'histogram', labels: ['namespace', 'service_name', 'task_queue', 'workflow_type'] },
  temporal_activity_schedule_to_start_latency_seconds: { type: 'histogram', labels: ['namespace', 'service_name', 'task_queue'] },
  temporal_activity_execution_latency_seconds: { type: 'histogram', labels: ['activity_type', 'namespace', 'service_name', 'task_queue', 'workflow_type'] },
  temporal_request_latency_seconds: { type: 'histogram', labels: ['namespace', 'operation', 'service_name', 'task_queue'] },
  temporal_worker_task_slots_available: { type: 'gauge', labels: ['namespace', 'service_name', 'task_queue', 'worker_type'] },
  temporal_worker_task_slots_used: { type: 'gauge', labels: ['namespace', 'service_name', 'task_queue', 'worker_type'] },
  temporal_num_pollers: { type: 'gauge', labels: ['namespace', 'poller_type', 'service_name', 'task_queue'] },
  temporal_sticky_cache_size: { type: 'gauge', labels: ['namespace', 'service_name', 'task_queue'] },
  temporal_workflow_completed: { type: 'counter', labels: ['namespace', 'service_name', 'task_queue', 'workflow_type'] },
  temporal_workflow_failed: { type: 'counter', labels: ['namespace', 'service_name', 'task_queue', 'workflow_type'] },
  temporal_activity_task_received: { type: 'counter', labels: ['activity_type', 'eager', 'namespace', 'service_name', 'task_queue', 'workflow_type'] },
  temporal_request: { type: 'counter', labels: ['namespace', 'operation', 'service_name', 'task_queue'] },
  temporal_request_failure: { type: 'counter', labels: ['namespace', 'operation', 'service_name', 'status_code'] },
};

/** What mix2api registers, read from its prom-client registry. */
function mix2apiFamilies(): Record<string, Family> {
  const metrics = new Metrics({ models: ['m'] });
  const list = metrics.registry.getMetricsAsArray() as unknown as Array<{ name: string; type: string; labelNames?: readonly string[] }>;
  return Object.fromEntries(list.map((m) => [m.name, { type: m.type as Family['type'], labels: m.labelNames ?? [] }]));
}

const families: Record<string, Family> = { ...mix2apiFamilies(), ...TEMPORAL_SDK };

interface Selector {
  metric: string;
  labels: string[];
  range?: string;
  /** Enclosing function and aggregation names, outermost first. */
  calls: string[];
}

const GROUPING = new Set(['by', 'without', 'on', 'ignoring', 'group_left', 'group_right']);
const KEYWORDS = new Set([...GROUPING, 'bool', 'and', 'or', 'unless', 'offset', 'inf', 'nan']);
const TOKEN = /\s+|"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|\$\{?\w+\}?|[A-Za-z_:][\w:]*|\d+(?:\.\d+)?(?:e[+-]?\d+)?|=~|!~|!=|==|>=|<=|[-+*/%^<>=(){}[\],:]/y;

/** Enough of PromQL to find each selector, its label matchers, range, and the calls around it. */
function parsePromQL(expr: string): { selectors: Selector[]; grouping: string[]; problems: string[] } {
  const tokens: string[] = [];
  const problems: string[] = [];
  for (let i = 0; i < expr.length; ) {
    TOKEN.lastIndex = i;
    const m = TOKEN.exec(expr);
    if (!m) {
      problems.push(`unexpected "${expr[i]}" at ${i}`);
      break;
    }
    if (!/^\s/.test(m[0])) tokens.push(m[0]);
    i = TOKEN.lastIndex;
  }
  const selectors: Selector[] = [];
  const grouping: string[] = [];
  const stack: Array<string | null> = [];
  let pending: string | null = null; // an aggregation waiting for its `(` after by/without
  const ident = (t: string | undefined) => t !== undefined && /^[A-Za-z_:][\w:]*$/.test(t);
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i]!;
    const next = tokens[i + 1];
    if (GROUPING.has(t)) {
      if (next === '(') {
        let j = i + 2;
        for (; j < tokens.length && tokens[j] !== ')'; j++) if (tokens[j] !== ',') grouping.push(tokens[j]!);
        i = j;
      }
    } else if (ident(t) && next === '(') {
      stack.push(t);
      i++;
    } else if (ident(t) && GROUPING.has(next ?? '')) {
      pending = t;
    } else if (t === '(') {
      stack.push(pending);
      pending = null;
    } else if (t === ')') {
      if (stack.pop() === undefined) problems.push('unbalanced ")"');
    } else if (t === '[') {
      const j = tokens.indexOf(']', i);
      if (j < 0) problems.push('unbalanced "["');
      const last = selectors[selectors.length - 1];
      if (last && tokens[i - 1] !== ')') last.range = tokens.slice(i + 1, j).join('');
      else problems.push('a range on a subquery');
      i = j < 0 ? tokens.length : j;
    } else if (t === '{') {
      problems.push('a selector without a metric name');
    } else if (ident(t) && !KEYWORDS.has(t.toLowerCase())) {
      const s: Selector = { metric: t, labels: [], calls: stack.filter((c): c is string => c !== null) };
      if (next === '{') {
        let j = i + 2;
        while (j < tokens.length && tokens[j] !== '}') {
          const [label, op, value] = [tokens[j], tokens[j + 1], tokens[j + 2]];
          if (!ident(label) || !['=', '!=', '=~', '!~'].includes(op ?? '') || !/^["']/.test(value ?? '')) {
            problems.push(`${t}: bad label matcher near "${label ?? ''}"`);
            break;
          }
          s.labels.push(label!);
          j += 3;
          if (tokens[j] === ',') j++;
        }
        i = j;
      }
      selectors.push(s);
    }
  }
  if (stack.length > 0) problems.push('unbalanced "("');
  return { selectors, grouping, problems };
}

const RATES = new Set(['rate', 'irate', 'increase']);
const ALWAYS = ['job', 'instance'];

/** Problems of one query: unknown metrics and labels, and functions that do not fit a family's type. */
function exprProblems(expr: string, known: Record<string, Family>, legend = ''): string[] {
  const { selectors, grouping, problems } = parsePromQL(expr);
  const out = problems.map((p) => `${expr}: ${p}`);
  if (selectors.length === 0) out.push(`${expr}: no metric`);
  const labels = new Set(ALWAYS);
  for (const s of selectors) {
    const suffix = /_(bucket|sum|count)$/.exec(s.metric)?.[1];
    const base = suffix && known[s.metric.slice(0, -suffix.length - 1)]?.type === 'histogram' ? s.metric.slice(0, -suffix.length - 1) : s.metric;
    const f = known[base];
    if (!f) {
      out.push(`${s.metric}: not a metric mix2api or the Temporal SDK exports`);
      continue;
    }
    f.labels.forEach((l) => labels.add(l));
    if (suffix === 'bucket') labels.add('le');
    for (const l of s.labels) if (!f.labels.includes(l) && !ALWAYS.includes(l) && !(l === 'le' && suffix === 'bucket')) out.push(`${s.metric}: has no label "${l}"`);
    const rated = s.calls.some((c) => RATES.has(c));
    if (f.type === 'gauge' && rated) out.push(`${s.metric}: a gauge inside ${s.calls.join('/')}`);
    if ((f.type === 'counter' || (f.type === 'histogram' && suffix)) && !rated) out.push(`${s.metric}: a counter outside rate/increase`);
    if (f.type === 'histogram' && !suffix) out.push(`${s.metric}: a histogram has only _bucket, _sum and _count series`);
    if (suffix === 'bucket' && !s.calls.includes('histogram_quantile')) out.push(`${s.metric}: buckets outside histogram_quantile`);
    if (rated && s.range !== '$__rate_interval') out.push(`${s.metric}: rate window "${s.range ?? ''}", not $__rate_interval`);
  }
  for (const g of grouping) if (!labels.has(g)) out.push(`${expr}: groups by "${g}", which none of its metrics has`);
  for (const [, l] of legend.matchAll(/\{\{\s*(\w+)\s*\}\}/g)) if (!grouping.includes(l!) && !ALWAYS.includes(l!)) out.push(`legend {{${l}}}: not a label the query keeps`);
  return out;
}

function allPanels(panels: Panel[]): Panel[] {
  return panels.flatMap((p) => [p, ...allPanels(p.panels ?? [])]);
}

function dashboardProblems(d: Dashboard, known: Record<string, Family>): string[] {
  const problems: string[] = [];
  if (!d.uid || !d.title) problems.push('no uid or title');
  if (!d.schemaVersion || d.schemaVersion < 36) problems.push(`schemaVersion ${d.schemaVersion}: older than Grafana 9`);
  const vars = d.templating?.list ?? [];
  const dsVars = vars.filter((v) => v.type === 'datasource' && v.query === 'prometheus').map((v) => v.name);
  const inputs = (d.__inputs ?? []).filter((i) => i.type === 'datasource' && i.pluginId === 'prometheus').map((i) => i.name);
  const templated = new Set([...dsVars.flatMap((n) => [`$${n}`, `\${${n}}`]), ...inputs.map((n) => `\${${n}}`)]);
  if (templated.size === 0) problems.push('no Prometheus datasource variable or input');
  const checkDs = (where: string, ds: { type?: string; uid?: string } | null | undefined) => {
    if (!ds?.uid || !templated.has(ds.uid) || ds.type !== 'prometheus') problems.push(`${where}: datasource ${JSON.stringify(ds)} is not the templated Prometheus one`);
  };
  for (const v of vars) {
    if (v.type !== 'query') continue;
    checkDs(`variable ${v.name}`, v.datasource);
    const q = typeof v.query === 'string' ? v.query : (v.query?.query ?? '');
    const m = /^label_values\(\s*([A-Za-z_:][\w:]*)\s*,\s*(\w+)\s*\)$/.exec(q);
    if (!m) problems.push(`variable ${v.name}: ${q} is not label_values(metric, label)`);
    else if (!known[m[1]!]?.labels.includes(m[2]!)) problems.push(`variable ${v.name}: ${m[1]} has no label "${m[2]}"`);
  }
  const panels = allPanels(d.panels);
  const ids = panels.map((p) => p.id);
  for (const id of new Set(ids)) if (id === undefined || ids.filter((x) => x === id).length > 1) problems.push(`panel id ${id}: missing or not unique`);
  const cells = new Map<string, string>();
  for (const p of panels) {
    const where = `panel ${p.id} "${p.title ?? ''}"`;
    const g = p.gridPos;
    if (!g || g.x < 0 || g.w < 1 || g.x + g.w > 24 || g.h < 1) problems.push(`${where}: gridPos ${JSON.stringify(g)}`);
    else
      for (let x = g.x; x < g.x + g.w; x++)
        for (let y = g.y; y < g.y + g.h; y++) {
          const other = cells.get(`${x},${y}`);
          if (other && other !== where) {
            problems.push(`${where}: overlaps ${other}`);
            x = y = Infinity;
          } else cells.set(`${x},${y}`, where);
        }
    if (p.type === 'row') continue;
    checkDs(where, p.datasource);
    if (!p.targets?.length) problems.push(`${where}: no queries`);
    const refIds = (p.targets ?? []).map((t) => t.refId);
    if (new Set(refIds).size !== refIds.length) problems.push(`${where}: refIds not unique`);
    for (const t of p.targets ?? []) {
      checkDs(`${where} ${t.refId}`, t.datasource);
      if (!t.expr) problems.push(`${where} ${t.refId}: no expr`);
      else problems.push(...exprProblems(t.expr, known, t.legendFormat).map((x) => `${where}: ${x}`));
    }
  }
  return problems;
}

function grafanaProvisioningProblems(c: Compose): string[] {
  const problems: string[] = [];
  const svc = c.services.grafana;
  if (!svc) return ['no grafana service'];
  const dir = 'deploy/grafana/provisioning';
  if (mountedAt(svc, dir) !== '/etc/grafana/provisioning') problems.push(`${dir} is not mounted at /etc/grafana/provisioning`);
  const yamls = <T>(sub: string): T[] => {
    const p = join(root, dir, sub);
    if (!existsSync(p) || !statSync(p).isDirectory()) return [];
    return readdirSync(p)
      .filter((f) => /\.ya?ml$/.test(f))
      .map((f) => YAML.parse(readFileSync(join(p, f), 'utf8')) as T);
  };
  const prom = yamls<{ datasources?: Array<{ type: string; url: string }> }>('datasources')
    .flatMap((y) => y.datasources ?? [])
    .filter((x) => x.type === 'prometheus');
  if (prom.length === 0) problems.push('no Prometheus datasource provisioned');
  for (const ds of prom) {
    const url = new URL(ds.url);
    if (!c.services[url.hostname]?.image?.startsWith('prom/prometheus')) problems.push(`datasource ${ds.url}: ${url.hostname} is not the Prometheus service`);
    if (Number(url.port) !== 9090) problems.push(`datasource ${ds.url}: Prometheus listens on 9090`);
  }
  const providers = yamls<{ providers?: Array<{ type: string; options?: { path?: string } }> }>('dashboards').flatMap((y) => y.providers ?? []);
  const at = mountedAt(svc, 'deploy/grafana/mix2api-dashboard.json');
  if (!at) problems.push('deploy/grafana/mix2api-dashboard.json is not mounted');
  else if (!providers.some((p) => p.type === 'file' && p.options?.path && at.startsWith(`${p.options.path.replace(/\/$/, '')}/`))) problems.push(`no file provider reads ${at}`);
  const home = envOf(svc).GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH;
  if (home && home !== at) problems.push(`the home dashboard ${home} is not the mounted one`);
  return problems;
}

// ---- the tests ----

describe('docker-compose.yml', () => {
  test('follows the Compose specification schema', () => {
    const validate = composeSchemaValidator();
    expect(validate(compose)).toEqual([]);
    const broken = clone(compose) as unknown as { services: Record<string, Record<string, unknown>> };
    broken.services.api!.imagee = 'typo';
    broken.services.worker!.restart = ['always'];
    expect(validate(broken).length).toBeGreaterThanOrEqual(2);
  });

  test('services have images or builds, pinned; dependencies, ports, volumes and mounted files exist', () => {
    expect(composeProblems(compose)).toEqual([]);
    const broken = clone(compose);
    broken.services.grafana!.image = 'grafana/grafana';
    broken.services.grafana!.depends_on = ['prometheus', 'nowhere'];
    broken.services.prometheus!.volumes = ['./deploy/missing.yml:/etc/prometheus/prometheus.yml:ro', 'undeclared:/prometheus'];
    broken.services.jaeger!.ports = ['8080:16686'];
    expect(composeProblems(broken).sort()).toEqual([
      'grafana: depends_on names no service "nowhere"',
      'grafana: image grafana/grafana has no pinned tag',
      'jaeger: host port 8080 is also published by api',
      'prometheus: mounts deploy/missing.yml, which does not exist',
      'prometheus: volume "undeclared" is not declared',
    ]);
  });

  test('every mix2api service boots with its environment and serves /metrics beyond loopback', () => {
    const services = mix2apiServices(compose);
    expect(services.map((s) => s.role).sort()).toEqual(['api', 'worker']);
    for (const s of services) expect({ [s.name]: metricsEndpoint(s.role, s.env) }).toEqual({ [s.name]: { port: expect.any(Number) } });
    const worker = services.find((s) => s.role === 'worker')!;
    const { METRICS_PORT: _port, ...noPort } = worker.env;
    expect(metricsEndpoint('worker', noPort)).toEqual({ problem: expect.stringMatching(/METRICS_PORT/) });
    const { METRICS_HOST: _host, ...noHost } = worker.env;
    expect(metricsEndpoint('worker', noHost)).toEqual({ problem: expect.stringMatching(/out of other containers' reach/) });
  });
});

describe('deploy/prometheus.yml', () => {
  test('scrapes every compose service that serves metrics, on its metrics port', () => {
    expect(prometheusProblems(prometheus, compose)).toEqual([]);
    const broken = clone(prometheus);
    broken.scrape_configs[1]!.dns_sd_configs![0]!.port = 8080;
    broken.scrape_configs.push({ job_name: 'ghost', static_configs: [{ targets: ['ghost:9464'] }] });
    const problems = prometheusProblems(broken, compose);
    expect(problems).toContain('ghost: ghost is not a compose service');
    expect(problems.some((p) => /^mix2api-worker: worker:8080, but worker serves metrics on \d+$/.test(p))).toBe(true);
    expect(problems).toContain('worker serves metrics that no job scrapes');
  });
});

describe('deploy/otel-collector.yaml', () => {
  test("pipelines use defined components; mix2api's OTLP/HTTP exports reach its receiver", () => {
    expect(collectorProblems(collector, compose)).toEqual([]);
    const broken = clone(collector);
    broken.service.pipelines.traces!.exporters = ['debug', 'otlp/nowhere'];
    const noTraces = clone(compose);
    noTraces.services.api!.environment = { ...envOf(noTraces.services.api!), OTEL_EXPORTER_OTLP_ENDPOINT: 'http://otel-collector:4317' };
    expect(collectorProblems(broken, noTraces)).toEqual([
      'pipeline traces: exporters "otlp/nowhere" is not defined',
      'exporters "otlp/jaeger" is in no pipeline',
      'api: sends traces to otel-collector:4317, not to otel-collector:4318 (the otlp receiver\'s http endpoint)',
    ]);
  });
});

describe('deploy/grafana', () => {
  test('the registered families are the ones the dashboard is checked against', () => {
    expect(families.mix2api_http_requests_total).toEqual({ type: 'counter', labels: ['route', 'model', 'status'] });
    expect(families.mix2api_tool_call_duration_seconds).toEqual({ type: 'histogram', labels: ['server', 'tool'] });
  });

  test('the dashboard: templated datasource, unique ids, and queries over registered metrics and labels', () => {
    expect(dashboardProblems(dashboard, families)).toEqual([]);
    // Every mix2api family has a panel.
    const used = new Set(allPanels(dashboard.panels).flatMap((p) => (p.targets ?? []).flatMap((t) => parsePromQL(t.expr ?? '').selectors.map((s) => s.metric.replace(/_(bucket|sum|count)$/, '')))));
    expect(Object.keys(families).filter((n) => n.startsWith('mix2api_') && !used.has(n))).toEqual([]);
    expect([...used].filter((n) => n.startsWith('temporal_')).length).toBeGreaterThanOrEqual(3);
  });

  test.each([
    ['sum(rate(mix2api_not_registered_total[$__rate_interval]))', /mix2api_not_registered_total: not a metric/],
    ['sum by (model) (rate(mix2api_tool_calls_total{model="x"}[$__rate_interval]))', /mix2api_tool_calls_total: has no label "model"/],
    ['rate(mix2api_active_streams[$__rate_interval])', /a gauge inside rate/],
    ['sum(mix2api_http_requests_total)', /a counter outside rate/],
    ['sum(rate(mix2api_model_calls_total[5m]))', /rate window "5m"/],
    ['histogram_quantile(0.95, sum by (le) (rate(mix2api_tool_call_duration_seconds[$__rate_interval])))', /only _bucket, _sum and _count/],
    ['sum by (upstream) (rate(temporal_workflow_failed[$__rate_interval]))', /groups by "upstream"/],
    ['sum(rate(mix2api_model_calls_total[$__rate_interval])', /unbalanced/],
  ])('a query that is wrong is caught: %s', (expr, problem) => {
    expect(exprProblems(expr, families).join('\n')).toMatch(problem);
    const broken = clone(dashboard);
    allPanels(broken.panels).find((p) => p.targets?.length)!.targets![0]!.expr = expr;
    expect(dashboardProblems(broken, families).join('\n')).toMatch(problem);
  });

  test('duplicate ids, fixed datasources and overlapping panels are caught', () => {
    const broken = clone(dashboard);
    const [a, b] = allPanels(broken.panels).filter((p) => p.type !== 'row');
    b!.id = a!.id;
    a!.datasource = { type: 'prometheus', uid: 'P1809F7CD0C75ACF3' };
    b!.gridPos = { ...a!.gridPos! };
    b!.targets![0]!.legendFormat = '{{nothing}}';
    const problems = dashboardProblems(broken, families).join('\n');
    expect(problems).toMatch(new RegExp(`panel id ${a!.id}: missing or not unique`));
    expect(problems).toMatch(/datasource .*P1809F7CD0C75ACF3.* is not the templated Prometheus one/);
    expect(problems).toMatch(/overlaps/);
    expect(problems).toMatch(/legend \{\{nothing\}\}/);
  });

  test('provisioning: the datasource is the Prometheus service, and a file provider reads the mounted dashboard', () => {
    expect(grafanaProvisioningProblems(compose)).toEqual([]);
    const broken = clone(compose);
    broken.services.grafana!.volumes = (broken.services.grafana!.volumes ?? []).map((v) => (typeof v === 'string' ? v.replace('/etc/grafana/dashboards/', '/srv/') : v));
    expect(grafanaProvisioningProblems(broken)).toEqual([
      'no file provider reads /srv/mix2api-dashboard.json',
      'the home dashboard /etc/grafana/dashboards/mix2api-dashboard.json is not the mounted one',
    ]);
  });
});
