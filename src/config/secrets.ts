/**
 * `env:VAR` secret references in config values. Resolution happens where a value is used (e.g. when an
 * MCP transport is built), so the raw config can be logged and shipped around without leaking secrets.
 */

/** Anything shaped like process.env (the frozen Config.env fits too). */
export type SecretEnv = Readonly<Record<string, string | undefined>>;

export const SECRET_REF_PREFIX = 'env:';
const VAR_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

export class SecretResolutionError extends Error {
  constructor(
    readonly variable: string,
    message: string,
  ) {
    super(message);
    this.name = 'SecretResolutionError';
  }
}

export function isSecretRef(value: string): boolean {
  return value.startsWith(SECRET_REF_PREFIX);
}

/**
 * Returns `value` unchanged unless it is `env:VAR`, in which case it returns env[VAR].
 * An unset or empty variable is an error: sending an empty Authorization header is never what was meant.
 * `where` (e.g. `mcpServers[github].headers.Authorization`) only makes the message easier to act on.
 */
export function resolveSecret(value: string, env: SecretEnv, where?: string): string {
  if (!isSecretRef(value)) return value;
  const name = value.slice(SECRET_REF_PREFIX.length);
  const at = where ? `${where}: ` : '';
  if (!VAR_NAME.test(name)) {
    throw new SecretResolutionError(name, `${at}invalid secret reference "${value}" (expected env:VARIABLE_NAME)`);
  }
  const resolved = env[name];
  if (resolved === undefined || resolved === '') {
    throw new SecretResolutionError(name, `${at}environment variable ${name} is not set (referenced as "${value}")`);
  }
  return resolved;
}

/** resolveSecret over every value of a string map (env vars, HTTP headers). */
export function resolveSecretMap(
  map: Readonly<Record<string, string>> | undefined,
  env: SecretEnv,
  where?: string,
): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(map ?? {})) {
    out[key] = resolveSecret(value, env, where ? `${where}.${key}` : key);
  }
  return out;
}
