/** What a handler throws to fail a task on purpose, and what a client's handle fails with. */
export class TaskError extends Error {
  override name = "TaskError";
  readonly retryable: boolean;
  readonly errorType: string | undefined;
  constructor(message: string, options: { retryable?: boolean; errorType?: string } = {}) {
    super(message);
    this.retryable = options.retryable ?? true;
    this.errorType = options.errorType;
  }
}

/** The task cannot succeed: do not try it again. */
export class NonRetryableError extends TaskError {
  override name = "NonRetryableError";
  constructor(message: string, options: { errorType?: string } = {}) {
    super(message, { ...options, retryable: false });
  }
}

export class TaskOutcomeError extends Error {
  override name = "TaskOutcomeError";
  constructor(readonly taskId: string, readonly state: string, readonly error: string | null | undefined, readonly attempt: number) {
    super(`task ${taskId} ended ${state}: ${error ?? "no detail"}`);
  }
}
export class TaskFailedError extends TaskOutcomeError {
  override name = "TaskFailedError";
}
export class TaskCancelledError extends TaskOutcomeError {
  override name = "TaskCancelledError";
}
export class TaskRefusedError extends Error {
  override name = "TaskRefusedError";
  constructor(readonly taskId: string, readonly reason: string, readonly detail: string = "") {
    super(`task ${taskId} refused (${reason}): ${detail || "no detail"}`);
  }
}
export class LeaseLostError extends Error {
  override name = "LeaseLostError";
  constructor(readonly resource: string, readonly leaseId: string, readonly reason: string) {
    super(`lease on '${resource}' lost: ${reason}`);
  }
}
export class LeaseTimeout extends Error {
  override name = "LeaseTimeout";
}
export class TimeoutError extends Error {
  override name = "TimeoutError";
}

/** The failure report's fields for what a handler threw. */
export function describeFailure(err: unknown): { error: string; error_type: string; retryable: boolean } {
  if (err instanceof TaskError) {
    return { error: err.message.slice(0, 10_000), error_type: (err.errorType ?? err.name).slice(0, 200), retryable: err.retryable };
  }
  if (err instanceof Error) {
    return { error: `${err.name}: ${err.message}`.slice(0, 10_000), error_type: err.name.slice(0, 200), retryable: true };
  }
  return { error: String(err).slice(0, 10_000), error_type: "Error", retryable: true };
}
