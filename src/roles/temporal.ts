/**
 * One Temporal connection and Client per process, built from config. The Client rides on the
 * workers' NativeConnection, which is what lets a start hand its first workflow task straight
 * to a worker of this process (eager workflow start).
 */
import { Client } from '@temporalio/client';
import { NativeConnection } from '@temporalio/worker';
import { OpenTelemetryWorkflowClientInterceptor } from '@temporalio/interceptors-opentelemetry';
import { encryptionKeys, type Config } from '../config/load';
import type { DataConverter } from '@temporalio/common';
import { payloadEncryption, type AesGcmCodec } from '../connectors/payloadCodec';
import { traceContextClientInterceptor } from '../telemetry/traceContext';

export interface TemporalHandles {
  native: NativeConnection;
  client: Client;
  /** Payload encryption: the codec (null without keys) and the converter the workers use too. */
  codec: AesGcmCodec | null;
  dataConverter: DataConverter | undefined;
  close(): Promise<void>;
}

export async function connectTemporal(config: Config, address: string, tracing = false): Promise<TemporalHandles> {
  const t = config.temporal;
  const native = await NativeConnection.connect({ address, tls: t.tls || Boolean(t.apiKey) ? {} : undefined, apiKey: t.apiKey });
  const { codec, dataConverter } = payloadEncryption(encryptionKeys(config));
  const client = new Client({
    connection: native,
    namespace: t.namespace,
    dataConverter,
    // Starts (and queries, signals, updates) carry the caller's trace context in Temporal headers:
    // the caller's own always, and with tracing on, the spans' too.
    interceptors: { workflow: tracing ? [traceContextClientInterceptor, new OpenTelemetryWorkflowClientInterceptor()] : [traceContextClientInterceptor] },
  });
  return { native, client, codec, dataConverter, close: () => native.close() };
}

/**
 * Whether Temporal answers, from a health check every `intervalMs` (each with its own deadline).
 * Requests that need Temporal consult it first, so while Temporal is down they get a 503 at once
 * instead of waiting out the gRPC client's retries; the probe that sees it back reopens the door.
 */
export class TemporalHealth {
  private up = true;
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly native: NativeConnection,
    intervalMs = 1000,
    private readonly deadlineMs = 1000,
  ) {
    this.timer = setInterval(() => void this.check(), intervalMs);
    this.timer.unref();
  }

  get isUp(): boolean {
    return this.up;
  }

  async check(): Promise<boolean> {
    this.up = await this.native
      .withDeadline(Date.now() + this.deadlineMs, () => this.native.healthService.check({}))
      .then(() => true)
      .catch(() => false);
    return this.up;
  }

  stop(): void {
    clearInterval(this.timer);
  }
}
