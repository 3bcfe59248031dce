/** One Temporal connection and Client per process, built from config. */
import { Client, Connection } from '@temporalio/client';
import { NativeConnection } from '@temporalio/worker';
import type { Config } from '../config/load';

export interface TemporalHandles {
  connection: Connection;
  native: NativeConnection;
  client: Client;
  close(): Promise<void>;
}

export async function connectTemporal(config: Config, address: string): Promise<TemporalHandles> {
  const t = config.temporal;
  const auth = { tls: t.tls || Boolean(t.apiKey) ? {} : undefined, apiKey: t.apiKey };
  const connection = await Connection.connect({ address, ...auth });
  const native = await NativeConnection.connect({ address, ...auth });
  const client = new Client({ connection, namespace: t.namespace });
  return {
    connection,
    native,
    client,
    close: async () => {
      await connection.close();
      await native.close();
    },
  };
}
