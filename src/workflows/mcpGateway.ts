/**
 * The MCP gateway's workflows (api/mcpGateway): one run per `tools/call`, so a gateway call is
 * as durable and as visible in the Temporal UI as a chat run's tool step, with the same retry,
 * heartbeat and idempotency key; and the catalog read behind `tools/list`, run where the MCP
 * servers are (the workers).
 */
import * as wf from '@temporalio/workflow';
import { GATEWAY_APPROVAL_ID, type ListToolsInput, type RunMcpServer, type ToolOutcome } from '../domain/run';
import type { CatalogEntry } from '../domain/toolNames';
import { Approvals } from './approvals';
import { Saga, UNDO_UNFINISHED } from './saga';
import { afterFailure, toolActivities } from './toolStep';

export interface GatewayCallInput {
  server: RunMcpServer;
  tool: string;
  arguments: string;
  inputSchema: Record<string, unknown>;
  keyName: string;
  approvalTimeoutSeconds: number;
}


export async function mcpToolCallWorkflow(input: GatewayCallInput): Promise<ToolOutcome> {
  const id = wf.workflowInfo().workflowId;
  const approvals = new Approvals();
  if (Approvals.needed(input.server, input.tool)) {
    // Decided by the gateway (the client's answer to an elicitation), the Temporal UI/CLI (signal), or the timeout (denies).
    const d = await approvals.wait({ approvalId: GATEWAY_APPROVAL_ID, callId: id, server: input.server.name, tool: input.tool, arguments: input.arguments }, input.approvalTimeoutSeconds);
    if (!d.approve) return { text: `The call was not approved (${d.by})${d.reason ? `: ${d.reason}` : ''}; the tool did not run.`, isError: true, truncated: false, ms: 0 };
  }
  // The workflow id is the idempotency key: a client's retry with the same `_meta` key joins this run.
  const saga = new Saga();
  const undoAndCancel = async (): Promise<never> => {
    await saga.compensate(id, () => undefined);
    throw new wf.CancelledFailure('the MCP client cancelled the call');
  };
  const call = (moves: number): Promise<ToolOutcome> => toolActivities(`mcp ${input.server.name}/${input.tool}`, input.server.timeoutSeconds, input.server.unsafe).callTool({
    runId: id,
    callId: id,
    idempotencyKey: id,
    server: input.server.name,
    tool: input.tool,
    arguments: input.arguments,
    inputSchema: input.inputSchema,
    timeoutSeconds: input.server.timeoutSeconds,
    maxOutputBytes: input.server.maxOutputBytes,
  }).catch((e: unknown) => {
    if (wf.isCancellation(e) && wf.patched(UNDO_UNFINISHED)) {
      // Cancelled while it ran: it may have done its work all the same.
      saga.recordUnfinished(input.server, input.tool, id, input.arguments);
      return undoAndCancel();
    }
    const next = afterFailure(e, input.server, { server: input.server.name, tool: input.tool }, moves);
    if (next && 'outcome' in next) return next.outcome;
    if (next) return call(moves + 1);
    throw e;
  });
  const out = await call(0);
  // A tool that finished before it heard of the cancel still ends a cancelled call as cancelled,
  // and its declared undo runs (the saga of a one-step run).
  if (wf.CancellationScope.current().consideredCancelled) {
    saga.record(input.server, input.tool, id, input.arguments, out);
    return undoAndCancel();
  }
  return out;
}

export async function mcpListToolsWorkflow(input: ListToolsInput): Promise<CatalogEntry[]> {
  return toolActivities('mcp tools/list', 30).listTools(input);
}
