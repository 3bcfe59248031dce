/**
 * ModelSteps: the model steps this process streams, by run. `callModel` hands each attempt's
 * task token here; the attempt starts (seeded with what earlier attempts streamed, when they ran
 * elsewhere), or it is the call the API prestarted for the run's first step, which it adopts
 * when the two requests are the same. A prestart that no activity adopts is stopped.
 */
import type { CallModelInput } from '../domain/run';
import type { HeldEntry } from '../domain/lease';
import type { StepProgress } from '../domain/stepLog';
import type { HeldActivity } from './lease';
import { ModelStep, type StepContext } from './modelStep';

export interface AttemptInfo {
  attempt: number;
  taskToken: Uint8Array;
  /** The activity this attempt is, as Temporal names it (the process's lease lists it). */
  activity: HeldActivity;
  /** The last heartbeat of this activity's earlier attempt, if any. */
  heartbeatDetails?: unknown;
}

/** The fields of a model call that decide what the upstream is asked and how output is shown. */
const callKey = (c: CallModelInput) => JSON.stringify([c.runId, c.step, c.upstream, c.body, c.serverTools ?? [], c.runScopedCallIds === true, c.continuation]);

function priorEvents(details: unknown, step: number): StepProgress['events'] {
  const p = details as Partial<StepProgress> | undefined;
  return p?.step === step && Array.isArray(p.events) ? p.events : [];
}

export class ModelSteps {
  private readonly active = new Map<string, ModelStep>();
  private readonly prestarted = new Map<string, { step: ModelStep; timer: NodeJS.Timeout }>();
  /** Called when an attempt is attached (the process's lease tells Temporal soon). */
  onHold: () => void = () => undefined;

  constructor(
    private readonly ctx: StepContext,
    /** A prestarted call no activity adopted within this long is stopped. */
    private readonly adoptWithinMs = 30_000,
  ) {}

  /** Starts a run's first model call while its workflow is being started. */
  prestart(input: CallModelInput): void {
    this.cancelPrestart(input.runId);
    const step = new ModelStep(this.ctx, input, 1, []);
    const timer = setTimeout(() => this.cancelPrestart(input.runId), this.adoptWithinMs);
    timer.unref();
    this.prestarted.set(input.runId, { step, timer });
  }

  /** The run did not start (or started elsewhere): its prestarted call is not wanted. */
  cancelPrestart(runId: string): void {
    const p = this.prestarted.get(runId);
    if (!p) return;
    this.prestarted.delete(runId);
    clearTimeout(p.timer);
    p.step.stop('not adopted by the run');
  }

  claim(input: CallModelInput, info: AttemptInfo): void {
    const pre = this.prestarted.get(input.runId);
    if (pre) {
      this.prestarted.delete(input.runId);
      clearTimeout(pre.timer);
      if (info.attempt === 1 && !input.resume && callKey(pre.step.input) === callKey(input)) return this.track(pre.step, info);
      // What it streamed stays in the step's log, as an earlier attempt's output.
      pre.step.stop('the run asked for a different call');
    }
    this.active.get(input.runId)?.stop('superseded by a newer attempt');
    const prior = input.resume ? (input.prior ?? []) : info.attempt > 1 ? priorEvents(info.heartbeatDetails, input.step) : [];
    this.track(new ModelStep(this.ctx, input, info.attempt, prior), info);
  }

  /** The attached attempts, as this process's lease names them. */
  held(): HeldEntry[] {
    const out: HeldEntry[] = [];
    for (const s of this.active.values()) {
      const h = s.held();
      if (h) out.push(h);
    }
    return out;
  }

  /**
   * This process's lease lapsed while it lived (it was frozen, or cut off from Temporal). The
   * steps its last renewal named have moved already, and handing them back now reaches nothing
   * (their attempts are over). The others (taken in the instant before a renewal would have
   * named them, or handed to this process's polls while it was frozen) are handed back, so they
   * move at once rather than at their start-to-close timeout.
   */
  async drop(): Promise<void> {
    const steps = [...this.active.values()];
    this.active.clear();
    await Promise.all(steps.map((s) => s.handBack('the process running this step lost its lease')));
  }

  /** Asks Temporal whether the run's step here was cancelled (see ModelStep `checkCancel`); how many stopped. */
  async checkCancel(runId: string): Promise<number> {
    const s = this.active.get(runId);
    return s && (await s.checkCancel()) ? 1 : 0;
  }

  /** Hands every attached attempt back to Temporal for an immediate retry elsewhere. */
  async shutdown(): Promise<void> {
    for (const runId of [...this.prestarted.keys()]) this.cancelPrestart(runId);
    const steps = [...this.active.values()];
    this.active.clear();
    await Promise.all(steps.map((s) => s.handBack()));
  }

  /** Model calls this process is streaming now. */
  get size(): number {
    return this.active.size + this.prestarted.size;
  }

  private track(step: ModelStep, info: AttemptInfo): void {
    this.active.set(step.input.runId, step);
    void step.released.then(() => {
      if (this.active.get(step.input.runId) === step) this.active.delete(step.input.runId);
    });
    step.attach(info.taskToken, info.activity);
    this.onHold();
  }
}
