/**
 * One Temporal connection and Client per process, built from config. The Client rides on the
 * workers' NativeConnection, which is what lets a start hand its first workflow task straight
 * to a worker of this process (eager workflow start).
 */
import { Client } from '@temporalio/client';
import { NativeConnection } from '@temporalio/worker';
import type { Config } from '../config/load';

export interface TemporalHandles {
  native: NativeConnection;
  client: Client;
  close(): Promise<void>;
}

export async function connectTemporal(config: Config, address: string): Promise<TemporalHandles> {
  const t = config.temporal;
  const native = await NativeConnection.connect({ address, tls: t.tls || Boolean(t.apiKey) ? {} : undefined, apiKey: t.apiKey });
  const client = new Client({ connection: native, namespace: t.namespace });
  return { native, client, close: () => native.close() };
}
