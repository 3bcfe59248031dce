/**
 * Workflow interceptors for OpenTelemetry (only bundled when tracing is on): the workflow's span
 * continues the start call's context from the Temporal headers, and every activity it schedules
 * carries it on, so spans stay in one trace whichever worker runs which task.
 */
import type { WorkflowInterceptorsFactory } from '@temporalio/workflow';
import { OpenTelemetryInboundInterceptor, OpenTelemetryInternalsInterceptor, OpenTelemetryOutboundInterceptor } from '@temporalio/interceptors-opentelemetry/lib/workflow';

export const interceptors: WorkflowInterceptorsFactory = () => ({
  inbound: [new OpenTelemetryInboundInterceptor()],
  outbound: [new OpenTelemetryOutboundInterceptor()],
  internals: [new OpenTelemetryInternalsInterceptor()],
});
