/**
 * One attempt of one task on this agent: started → handler → succeeded | failed.
 *
 * Every report carries the assignment's attempt and fencing token and is delivered in
 * the background, in order, retried until confirmed. The start report waits 5 ms: a task
 * done by then sends only its final report, which records the start too. A StopTask
 * aborts the handler's signal and sends no report (the task manager has already ended
 * the attempt and would refuse one). An agent that stops waiting while it drains reports
 * the attempt failed and retryable (AgentStopped), so it is placed again at once.
 */
import { describeFailure, TaskError } from "./errors";
import type { Lease, LeaseBook } from "./lease";
import type { Logger } from "./log";
import type { AssignTask, Envelope, Json } from "./protocol";
import type { ReliableSender } from "./sender";

export const START_GRACE_MS = 5;

/** What a capability handler receives. */
export interface Task {
  readonly id: string;
  readonly capability: string;
  readonly payload: any; // the submitted JSON: `any` so handlers index it without casts
  readonly attempt: number;
  readonly fencingToken: number;
  readonly timeoutS: number;
  readonly agentId: string;
  /** Aborted when the attempt is stopped (StopTask: cancel or time-out) or the agent gives up on it. */
  readonly signal: AbortSignal;
  /** Leases the allocator granted with the assignment (renewed while the task runs). */
  readonly leases: readonly Lease[];
  /** How far along (0..1). Returns at once; delivery is reliable. */
  progress(fraction: number, message?: string): void;
  /** Acquire a lease, renewed until `lease.release()`. */
  lease(resource: string, options?: { ttlS?: number; timeoutS?: number }): Promise<Lease>;
  /** Hold a lease for the length of `fn`; released after, and LeaseLostError if it was lost. */
  withLease<T>(resource: string, fn: (lease: Lease) => Promise<T>, options?: { ttlS?: number; timeoutS?: number }): Promise<T>;
}

export type Handler = (task: Task) => Promise<unknown> | unknown;
export type CancelReason = "stop" | "shutdown" | "timeout";

export class Execution {
  readonly assign: AssignTask;
  cancelReason: CancelReason | undefined;
  /** Settles once the attempt is over for this agent (final report handed to the sender, or stopped). */
  readonly done: Promise<void>;
  private finish!: () => void;
  private finished = false;
  private startTimer: NodeJS.Timeout | undefined;
  private readonly controller = new AbortController();
  private held: Lease[] = [];

  constructor(
    readonly envelope: Envelope<AssignTask>,
    private readonly handler: Handler,
    private readonly agentId: string,
    private readonly sender: ReliableSender,
    private readonly leases: LeaseBook,
    private readonly log: Logger,
  ) {
    this.assign = envelope.payload;
    this.done = new Promise<void>((resolve) => (this.finish = resolve));
  }

  get attempt(): number {
    return this.assign.attempt;
  }

  private ids() {
    const a = this.assign;
    return { task_id: a.task_id, agent_id: this.agentId, attempt: a.attempt, fencing_token: a.fencing_token };
  }

  start(): void {
    this.startTimer = setTimeout(() => this.sendStarted(), START_GRACE_MS);
    this.held = this.leases.adopt(this.assign.leases ?? [], Math.max(this.assign.timeout_s, 30));
    const book = this.leases;
    const task: Task = {
      id: this.assign.task_id,
      capability: this.assign.capability,
      payload: this.assign.payload,
      attempt: this.assign.attempt,
      fencingToken: this.assign.fencing_token,
      timeoutS: this.assign.timeout_s,
      agentId: this.agentId,
      signal: this.controller.signal,
      leases: this.held,
      progress: (fraction, message) => this.onProgress(fraction, message),
      lease: (resource, options = {}) => book.acquire(resource, options.ttlS ?? 30, options.timeoutS),
      withLease: async (resource, fn, options = {}) => {
        const lease = await book.acquire(resource, options.ttlS ?? 30, options.timeoutS);
        try {
          const value = await fn(lease);
          lease.check();
          return value;
        } finally {
          lease.release();
        }
      },
    };
    void this.run(task);
  }

  /** Stop the attempt: `stop` sends nothing more, `shutdown` reports it failed and retryable. */
  cancel(reason: CancelReason): void {
    if (this.finished) return;
    this.cancelReason ??= reason;
    if (reason === "stop") {
      clearTimeout(this.startTimer);
      this.startTimer = undefined;
      this.end();
    } else if (reason === "shutdown") {
      this.final({ ...this.ids(), error: "the agent stopped before the task finished", error_type: "AgentStopped", retryable: true }, "ReportTaskFailed");
    }
    this.controller.abort(new Error(`task ${reason}`));
  }

  private async run(task: Task): Promise<void> {
    const timeoutMs = this.assign.timeout_s * 1000;
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<"timeout">((resolve) => {
      timer = setTimeout(() => resolve("timeout"), timeoutMs);
    });
    try {
      const outcome = await Promise.race([Promise.resolve().then(() => this.handler(task)).then((value) => ({ value })), timedOut]);
      if (this.finished) {
        this.log("info", "sdk.result_dropped", { task_id: task.id, why: `the attempt was ${this.cancelReason ?? "ended"}` });
        return;
      }
      if (outcome === "timeout") {
        this.cancelReason = "timeout";
        this.final({ ...this.ids(), error: `no result within the time-out of ${this.assign.timeout_s}s`, error_type: "TaskTimeout", retryable: true }, "ReportTaskFailed");
        this.controller.abort(new Error("task timeout"));
        return;
      }
      const result = outcome.value === undefined ? null : (outcome.value as Json);
      let encoded: string | undefined;
      try {
        encoded = JSON.stringify(result);
      } catch (err) {
        throw new TaskError(`the result is not JSON: ${(err as Error).message}`, { retryable: false, errorType: "InvalidResult" });
      }
      if (encoded === undefined) throw new TaskError("the result is not JSON", { retryable: false, errorType: "InvalidResult" });
      this.final({ ...this.ids(), result: JSON.parse(encoded) as Json }, "ReportTaskSucceeded");
    } catch (err) {
      if (this.finished) return;
      const fields = describeFailure(err);
      this.log("warning", "sdk.task_failed", { task_id: task.id, attempt: task.attempt, ...fields });
      this.final({ ...this.ids(), ...fields }, "ReportTaskFailed");
    } finally {
      clearTimeout(timer);
      for (const lease of this.held) this.leases.drop(lease);
    }
  }

  private onProgress(fraction: number, message?: string): void {
    if (this.finished) return;
    const progress = Math.min(1, Math.max(0, Number(fraction) || 0));
    this.report("ReportTaskProgress", { ...this.ids(), progress, message: message ?? null });
  }

  private sendStarted(): void {
    this.startTimer = undefined;
    this.report("ReportTaskStarted", this.ids());
  }

  private report(type: string, payload: object): Promise<void> {
    if (this.startTimer !== undefined) { // a final report stands for the start; progress follows it
      clearTimeout(this.startTimer);
      this.startTimer = undefined;
      if (type === "ReportTaskProgress") this.sendStarted();
    }
    return this.sender.deliverSoon(this.sender.wrap(type, payload, this.envelope));
  }

  /** The final report: the slot is free for the allocator from the moment it is published. */
  private final(payload: object, type: "ReportTaskSucceeded" | "ReportTaskFailed"): void {
    if (this.finished) return;
    this.report(type, payload);
    this.end();
  }

  private end(): void {
    this.finished = true;
    this.finish();
  }
}
