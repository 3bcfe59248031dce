/** The workflow bundle's entry point: every workflow type the worker registers. */
export { chatCompletionWorkflow } from './chatCompletion';
export { sessionWorkflow } from './session';
export { keyLedgerWorkflow } from './keyLedger';
export { mcpToolCallWorkflow, mcpListToolsWorkflow } from './mcpGateway';
export { processLeaseWorkflow } from './processLease';
