/**
 * Turns an MCP CallToolResult into the text of an OpenAI `tool` message, capped in UTF-8 bytes.
 * Pure: binary payloads (images, audio, blobs) become short notes; the model never sees base64.
 */
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';

export interface ToolResultText {
  text: string;
  truncated: boolean;
  isError: boolean;
}

export function toolResultToText(result: CallToolResult, maxBytes: number): ToolResultText {
  const isError = result.isError === true;
  const parts: string[] = [];
  const content: unknown[] = Array.isArray(result.content) ? result.content : [];
  for (const block of content) parts.push(blockToText(block));

  // Servers SHOULD mirror structuredContent as JSON text; only add it when they did not.
  if (result.structuredContent !== undefined && !mirroredAsText(result.structuredContent, content)) {
    parts.push(JSON.stringify(result.structuredContent));
  }

  // Some upstreams reject empty tool messages, and an empty string tells the model nothing.
  const full = parts.length > 0 ? parts.join('\n') : isError ? '[tool failed without output]' : '[no output]';
  return { ...capUtf8(full, maxBytes), isError };
}

/**
 * The tool's `structuredContent`, kept beside the text for compensation argument mapping, when its
 * JSON fits in `maxBytes`; a bigger one is dropped (the capped text still carries it), so no tool
 * result can outgrow the cap that keeps it under Temporal's payload limit.
 */
export function cappedStructured(result: CallToolResult, maxBytes: number): unknown {
  const s = result.structuredContent;
  if (s === undefined) return undefined;
  return utf8Length(JSON.stringify(s)) <= maxBytes ? s : undefined;
}

/** Cuts `text` to at most `maxBytes` UTF-8 bytes on a character boundary and says so in a trailing note. */
export function capUtf8(text: string, maxBytes: number): { text: string; truncated: boolean } {
  const total = utf8Length(text);
  if (total <= maxBytes) return { text, truncated: false };
  let bytes = 0;
  let end = 0;
  for (const ch of text) {
    const size = codePointBytes(ch.codePointAt(0) ?? 0);
    if (bytes + size > maxBytes) break;
    bytes += size;
    end += ch.length;
  }
  return { text: `${text.slice(0, end)}\n[truncated: ${bytes} of ${total} bytes shown]`, truncated: true };
}

export function utf8Length(text: string): number {
  let bytes = 0;
  for (const ch of text) bytes += codePointBytes(ch.codePointAt(0) ?? 0);
  return bytes;
}

function codePointBytes(cp: number): number {
  // A lone surrogate is encoded as U+FFFD (3 bytes), like TextEncoder does.
  return cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
}

function blockToText(block: unknown): string {
  if (!isRecord(block)) return '[unsupported content]';
  switch (block.type) {
    case 'text':
      return str(block.text);
    case 'image':
      return `[image: ${str(block.mimeType) || 'unknown type'}, ${base64Bytes(block.data)} bytes]`;
    case 'audio':
      return `[audio: ${str(block.mimeType) || 'unknown type'}, ${base64Bytes(block.data)} bytes]`;
    case 'resource_link': {
      const details = [str(block.name), str(block.mimeType)].filter(Boolean).join(', ');
      const description = str(block.description);
      return `[resource link: ${str(block.uri)}${details ? ` (${details})` : ''}]${description ? ` ${description}` : ''}`;
    }
    case 'resource': {
      const resource = isRecord(block.resource) ? block.resource : {};
      const uri = str(resource.uri);
      const mime = str(resource.mimeType);
      if (typeof resource.text === 'string') return `[resource: ${uri}${mime ? ` (${mime})` : ''}]\n${resource.text}`;
      return `[resource: ${uri}, ${mime || 'binary'}, ${base64Bytes(resource.blob)} bytes]`;
    }
    default:
      return `[unsupported content: ${str(block.type) || 'unknown'}]`;
  }
}

function mirroredAsText(structured: unknown, content: unknown[]): boolean {
  const wanted = canonicalJson(structured);
  return content.some((block) => {
    if (!isRecord(block) || block.type !== 'text' || typeof block.text !== 'string') return false;
    try {
      return canonicalJson(JSON.parse(block.text)) === wanted;
    } catch {
      return false;
    }
  });
}

/** JSON with sorted keys, so `{a,b}` and `{b,a}` compare equal. */
function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (isRecord(value)) {
    const keys = Object.keys(value).sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(value[k])}`).join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}

/** Decoded size of a base64 string without decoding it. */
function base64Bytes(data: unknown): number {
  if (typeof data !== 'string') return 0;
  const clean = data.replace(/[^A-Za-z0-9+/=_-]/g, '');
  const padding = clean.endsWith('==') ? 2 : clean.endsWith('=') ? 1 : 0;
  return Math.max(0, Math.floor((clean.length * 3) / 4) - padding);
}

function str(value: unknown): string {
  return typeof value === 'string' ? value : '';
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
