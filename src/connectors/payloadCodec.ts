/**
 * Payload encryption: AES-256-GCM over each whole payload (its metadata and data, protobuf
 * encoded), so what Temporal stores — run inputs, prompts, tool arguments and output, results,
 * heartbeats, summaries, failures' details — is ciphertext; failures' messages and stack traces
 * too, which the failure converter that comes with it (workflows/failureConverter) makes a payload.
 * Each encrypted payload names its key (`encryption-key-id`): the first configured key encrypts,
 * every configured key decrypts, so a key rotates by putting the new one first and keeping the
 * old until its runs have closed.
 *
 * The client, both workers and the `/codec` endpoint (the Temporal Web UI's and CLI's remote
 * codec) all use this one codec.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { METADATA_ENCODING_KEY, type DataConverter, type Payload, type PayloadCodec } from '@temporalio/common';
import { temporal } from '@temporalio/proto';

export const ENCRYPTED_ENCODING = 'binary/encrypted';
export const KEY_ID_METADATA = 'encryption-key-id';
const IV_BYTES = 12;
const TAG_BYTES = 16;

const ProtoPayload = temporal.api.common.v1.Payload;
const enc = new TextEncoder();
const dec = new TextDecoder();

export interface EncryptionKey {
  id: string;
  /** 32 bytes. */
  key: Buffer;
}

export class CodecKeyError extends Error {}

export class AesGcmCodec implements PayloadCodec {
  private readonly byId: Map<string, Buffer>;
  private readonly current: EncryptionKey;

  constructor(keys: readonly EncryptionKey[]) {
    if (keys.length === 0) throw new CodecKeyError('at least one encryption key is needed');
    for (const k of keys) if (k.key.length !== 32) throw new CodecKeyError(`encryption key ${k.id}: AES-256 needs 32 bytes, got ${k.key.length}`);
    this.current = keys[0]!;
    this.byId = new Map(keys.map((k) => [k.id, k.key]));
  }

  async encode(payloads: Payload[]): Promise<Payload[]> {
    return payloads.map((p) => {
      const iv = randomBytes(IV_BYTES);
      const cipher = createCipheriv('aes-256-gcm', this.current.key, iv);
      // The key id is bound to the ciphertext: a payload cannot be passed off under another key.
      cipher.setAAD(enc.encode(this.current.id));
      const body = Buffer.concat([cipher.update(ProtoPayload.encode(p).finish()), cipher.final()]);
      return {
        metadata: { [METADATA_ENCODING_KEY]: enc.encode(ENCRYPTED_ENCODING), [KEY_ID_METADATA]: enc.encode(this.current.id) },
        data: Buffer.concat([iv, body, cipher.getAuthTag()]),
      };
    });
  }

  async decode(payloads: Payload[]): Promise<Payload[]> {
    return payloads.map((p) => {
      const encoding = p.metadata?.[METADATA_ENCODING_KEY];
      if (!encoding || dec.decode(encoding) !== ENCRYPTED_ENCODING) return p; // written before encryption was on
      const id = dec.decode(p.metadata?.[KEY_ID_METADATA] ?? new Uint8Array());
      const key = this.byId.get(id);
      if (!key) throw new CodecKeyError(`payload encrypted with key "${id}", which is not configured`);
      const data = Buffer.from(p.data ?? new Uint8Array());
      if (data.length < IV_BYTES + TAG_BYTES) throw new CodecKeyError('encrypted payload too short');
      const decipher = createDecipheriv('aes-256-gcm', key, data.subarray(0, IV_BYTES));
      decipher.setAAD(enc.encode(id));
      decipher.setAuthTag(data.subarray(data.length - TAG_BYTES));
      const plain = Buffer.concat([decipher.update(data.subarray(IV_BYTES, data.length - TAG_BYTES)), decipher.final()]);
      return ProtoPayload.decode(plain) as Payload;
    });
  }
}

/**
 * The failure converter that goes with encryption, as the module path the SDK wants. A prebuilt
 * workflow bundle must be built with it (`bundleWorkflowCode({ failureConverterPath })`) to
 * encrypt the workflows' own failures; a worker that bundles at start passes it on itself.
 */
export const ENCRYPTED_FAILURE_CONVERTER = require.resolve('../workflows/failureConverter');

/**
 * The codec (null without keys) and the data converter that every Temporal client and worker of
 * this process shares. Without keys, failures keep the SDK's default converter: their messages
 * stay plain text, readable in the Web UI with no codec.
 */
export function payloadEncryption(keys: readonly EncryptionKey[]): { codec: AesGcmCodec | null; dataConverter: DataConverter | undefined } {
  const codec = keys.length === 0 ? null : new AesGcmCodec(keys);
  return { codec, dataConverter: codec ? { payloadCodecs: [codec], failureConverterPath: ENCRYPTED_FAILURE_CONVERTER } : undefined };
}

/** `{ payloads: [...] }` as the remote-codec protocol sends it: protobuf JSON (bytes as base64). */
interface JsonPayload {
  metadata?: Record<string, string>;
  data?: string;
}

export function payloadsFromJson(body: unknown): Payload[] | null {
  const list = (body as { payloads?: unknown } | null)?.payloads;
  if (!Array.isArray(list)) return null;
  const out: Payload[] = [];
  for (const item of list as unknown[]) {
    if (!item || typeof item !== 'object') return null;
    const { metadata = {}, data = '' } = item as JsonPayload;
    if (typeof metadata !== 'object' || typeof data !== 'string' || Object.values(metadata).some((v) => typeof v !== 'string')) return null;
    out.push({ metadata: Object.fromEntries(Object.entries(metadata).map(([k, v]) => [k, Buffer.from(v, 'base64')])), data: Buffer.from(data, 'base64') });
  }
  return out;
}

export function payloadsToJson(payloads: Payload[]): { payloads: JsonPayload[] } {
  const b64 = (u: Uint8Array | null | undefined) => Buffer.from(u ?? new Uint8Array()).toString('base64');
  return { payloads: payloads.map((p) => ({ metadata: Object.fromEntries(Object.entries(p.metadata ?? {}).map(([k, v]) => [k, b64(v)])), data: b64(p.data) })) };
}
