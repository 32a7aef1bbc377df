/**
 * Submit tasks, await their outcomes, cancel them.
 *
 *     const client = await Client.connect();
 *     console.log(await client.submit("crawl", { url: "https://example.com" }).result({ timeoutS: 60 }));
 *     await client.close();
 *
 * The client listens on its own exclusive inbox (`<ns>.client.<client_id>`), declared
 * before the first submit, and every submit names it as `reply_to`, so the TaskOutcome
 * comes back there. It takes notices only from service users (RALLY_SERVICE_USERS and its
 * own user) and only for tasks it submitted. A TaskRefused fails the handle at once.
 *
 * A task's state and history come over the broker too: `view()`, `state()` and `history()`
 * send a QueryTask, answered with a TaskView in the same inbox (no access to the store).
 */
import { randomUUID } from "node:crypto";
import {
  TaskCancelledError, TaskFailedError, TaskRefusedError, TimeoutError,
} from "./errors";
import { handleDelivery, type Incoming } from "./inbox";
import { jsonLogger, type Logger } from "./log";
import { type Json, Names, type TaskAccepted, type TaskOutcome, type TaskRefused, type TaskView, type TimelineEntry } from "./protocol";
import { QueryBook } from "./queries";
import { ReliableSender } from "./sender";
import { brokerUser, serviceUsers, settingsFromEnv, type Settings } from "./settings";
import { Transport } from "./transport";

export interface SubmitOptions {
  taskId?: string;
  priority?: number;
  idempotencyKey?: string;
  timeoutS?: number;
  maxAttempts?: number;
  backoff?: { initial_s?: number; factor?: number; max_s?: number };
  dependsOn?: Array<string | TaskHandle>;
  resources?: string[];
  pendingTimeoutS?: number;
}

export interface ClientOptions {
  clientId?: string;
  settings?: Partial<Settings>;
  serviceUsers?: Iterable<string>;
  logger?: Logger;
}

interface Pending {
  promise: Promise<TaskOutcome>;
  resolve: (outcome: TaskOutcome) => void;
  reject: (err: Error) => void;
  settled: boolean;
}

export class TaskHandle {
  constructor(private readonly client: Client, private readonly submittedId: string, private readonly pending: Pending) {}

  /** The task's id; for a duplicate idempotency key, the id of the existing task. */
  get taskId(): string {
    return this.client.canonical(this.submittedId);
  }

  get done(): boolean {
    return this.pending.settled;
  }

  /** The TaskOutcome (any end state); TaskRefusedError if the submit was refused. */
  outcome(options: { timeoutS?: number } = {}): Promise<TaskOutcome> {
    if (options.timeoutS === undefined) return this.pending.promise;
    let timer: NodeJS.Timeout | undefined;
    const expired = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new TimeoutError(`no outcome for task ${this.taskId} within ${options.timeoutS}s`)), options.timeoutS! * 1000);
    });
    return Promise.race([this.pending.promise, expired]).finally(() => clearTimeout(timer));
  }

  /** The result; TaskFailedError (dead), TaskCancelledError, TaskRefusedError or TimeoutError otherwise. */
  async result(options: { timeoutS?: number } = {}): Promise<Json> {
    const outcome = await this.outcome(options);
    if (outcome.state === "succeeded") return outcome.result ?? null;
    const ErrorClass = outcome.state === "cancelled" ? TaskCancelledError : TaskFailedError;
    throw new ErrorClass(this.taskId, outcome.state, outcome.error, outcome.attempt);
  }

  cancel(reason = "cancelled by request"): Promise<void> {
    return this.client.cancel(this.taskId, reason);
  }
}

/** What `submit()` returns: await it for the handle, or chain `.result()`. */
export class Submission implements PromiseLike<TaskHandle> {
  private readonly sent: Promise<TaskHandle>;
  constructor(readonly taskId: string, send: () => Promise<TaskHandle>) {
    this.sent = send();
    this.sent.catch(() => undefined); // reported to whoever awaits it
  }
  then<A = TaskHandle, B = never>(onOk?: ((h: TaskHandle) => A | PromiseLike<A>) | null, onErr?: ((e: unknown) => B | PromiseLike<B>) | null): Promise<A | B> {
    return this.sent.then(onOk, onErr);
  }
  async result(options: { timeoutS?: number } = {}): Promise<Json> {
    return (await this.sent).result(options);
  }
}

export class Client {
  readonly clientId: string;
  readonly settings: Settings;
  private readonly names: Names;
  private readonly log: Logger;
  private readonly user: string;
  private readonly trusted: Set<string>;
  private readonly pending = new Map<string, Pending>();
  private readonly aliases = new Map<string, string>();
  private transport: Transport | undefined;
  private sender: ReliableSender | undefined;
  private connecting: Promise<void> | undefined;
  private readonly queries = new QueryBook();

  constructor(options: ClientOptions = {}) {
    this.settings = settingsFromEnv(options.settings);
    this.names = new Names(this.settings.namespace);
    this.user = brokerUser(this.settings.url);
    const services = new Set(options.serviceUsers ?? serviceUsers());
    this.trusted = new Set([...services, this.user]);
    // a plain (non-service) user hears its notices on the inbox of its user name
    this.clientId = options.clientId ?? (services.has(this.user) ? `client-${randomUUID().replace(/-/g, "").slice(0, 12)}` : this.user);
    this.log = options.logger ?? jsonLogger({ client_id: this.clientId });
  }

  static async connect(options: ClientOptions = {}): Promise<Client> {
    const client = new Client(options);
    await client.open();
    return client;
  }

  async open(): Promise<void> {
    this.connecting ??= (async () => {
      const transport = new Transport(this.settings.url, `client ${this.clientId}`, this.log);
      await transport.connect();
      const queue = this.names.clientQueue(this.clientId);
      await transport.consume(
        async (channel) => {
          await channel.assertQueue(queue, { durable: false, exclusive: true, autoDelete: true });
          await channel.bindQueue(queue, this.names.inbox, this.clientId);
          return queue;
        },
        (msg, channel) => handleDelivery(msg, channel, (incoming) => this.dispatch(incoming), this.log),
        256,
        true,
      );
      this.transport = transport;
      this.sender = new ReliableSender(transport, this.names, this.clientId, this.user, this.log);
    })();
    return this.connecting;
  }

  async close(): Promise<void> {
    this.sender?.cancelAll();
    await this.transport?.close();
    this.transport = undefined;
    this.connecting = undefined;
  }

  canonical(taskId: string): string {
    return this.aliases.get(taskId) ?? taskId;
  }

  /** Submit a task: build it now, send it (confirmed), and follow it to its outcome. */
  submit(capability: string, payload: Json = null, options: SubmitOptions = {}): Submission {
    const taskId = options.taskId ?? randomUUID();
    const command = {
      task_id: taskId,
      capability,
      payload,
      priority: options.priority ?? 0,
      idempotency_key: options.idempotencyKey ?? null,
      timeout_s: options.timeoutS ?? 300,
      max_attempts: options.maxAttempts ?? 3,
      backoff: { initial_s: 1, factor: 2, max_s: 60, ...(options.backoff ?? {}) },
      depends_on: (options.dependsOn ?? []).map((d) => (typeof d === "string" ? d : d.taskId)),
      resources: options.resources ?? [],
      reply_to: this.clientId,
      ...(options.pendingTimeoutS !== undefined ? { pending_timeout_s: options.pendingTimeoutS } : {}),
    };
    return new Submission(taskId, async () => {
      await this.open();
      // the outcome's slot exists before the command leaves, so even the fastest outcome finds it
      const handle = this.handle(taskId);
      await this.sender!.deliver(this.sender!.wrap("SubmitTask", command));
      this.log("info", "sdk.submitted", { task_id: taskId, capability });
      return handle;
    });
  }

  /** A handle on a task this client submitted (its outcome comes to this inbox). */
  handle(taskId: string): TaskHandle {
    return new TaskHandle(this, taskId, this.slot(this.canonical(taskId)));
  }

  async cancel(task: string | TaskHandle, reason = "cancelled by request"): Promise<void> {
    await this.open();
    const taskId = typeof task === "string" ? this.canonical(task) : task.taskId;
    await this.sender!.deliver(this.sender!.wrap("CancelTask", { task_id: taskId, reason }));
  }

  // ---- reads (a query the task manager answers) ----
  /** The task as the task manager has it now (`found` false if not, or not ours); TimeoutError if no answer. */
  view(task: string | TaskHandle, options: { timeoutS?: number } = {}): Promise<TaskView> {
    return this.query(task, true, options.timeoutS ?? 10);
  }

  /** The task's current state; null if the task manager has never heard of it (or it is not ours to read). */
  async state(task: string | TaskHandle, options: { timeoutS?: number } = {}): Promise<TaskView | null> {
    const view = await this.query(task, false, options.timeoutS ?? 10);
    return view.found ? view : null;
  }

  /** What happened to the task, oldest first, in words (the latest 200 events). */
  async history(task: string | TaskHandle, options: { timeoutS?: number } = {}): Promise<TimelineEntry[]> {
    return (await this.query(task, true, options.timeoutS ?? 10)).timeline ?? [];
  }

  private async query(task: string | TaskHandle, timeline: boolean, timeoutS: number): Promise<TaskView> {
    await this.open();
    const taskId = typeof task === "string" ? this.canonical(task) : task.taskId;
    const envelope = this.sender!.wrap("QueryTask", { task_id: taskId, timeline });
    const answer = this.queries.expect(envelope.id); // before the query leaves
    let timer: NodeJS.Timeout | undefined;
    const expired = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new TimeoutError(`no answer about task ${taskId} within ${timeoutS}s`)), timeoutS * 1000);
    });
    try {
      await Promise.race([this.sender!.sendOnce(envelope), expired]);
      return await Promise.race([answer, expired]);
    } finally {
      clearTimeout(timer);
      this.queries.forget(envelope.id);
    }
  }

  private slot(taskId: string): Pending {
    let pending = this.pending.get(taskId);
    if (pending === undefined) {
      let resolve!: (o: TaskOutcome) => void;
      let reject!: (e: Error) => void;
      const promise = new Promise<TaskOutcome>((res, rej) => {
        resolve = res;
        reject = rej;
      });
      promise.catch(() => undefined); // a handle nobody awaits must not crash the process
      const p: Pending = {
        promise,
        settled: false,
        resolve: (o) => { p.settled = true; resolve(o); },
        reject: (e) => { p.settled = true; reject(e); },
      };
      pending = p;
      this.pending.set(taskId, pending);
    }
    return pending;
  }

  private dispatch(incoming: Incoming): boolean {
    const { envelope } = incoming;
    if (incoming.userId === undefined || !this.trusted.has(incoming.userId)) {
      this.log("warning", "sdk.notice_refused", { msg_type: envelope.type, broker_user: incoming.userId, why: "not published by a service user" });
      return true;
    }
    switch (envelope.type) {
      case "TaskOutcome": {
        const outcome = envelope.payload as unknown as TaskOutcome;
        const pending = this.pending.get(this.canonical(outcome.task_id));
        if (pending === undefined) this.log("warning", "sdk.outcome_ignored", { task_id: outcome.task_id, why: "not submitted here" });
        else if (!pending.settled) pending.resolve(outcome);
        return true;
      }
      case "TaskRefused": {
        const refused = envelope.payload as unknown as TaskRefused;
        const pending = this.pending.get(this.canonical(refused.task_id));
        if (pending !== undefined && !pending.settled) pending.reject(new TaskRefusedError(refused.task_id, refused.reason, refused.detail ?? ""));
        return true;
      }
      case "TaskAccepted": {
        const accepted = envelope.payload as unknown as TaskAccepted;
        const dup = accepted.duplicate_of;
        if (dup != null && dup !== accepted.task_id && this.pending.has(accepted.task_id)) {
          // the idempotency key (or task id) was taken: this handle follows that task
          this.aliases.set(accepted.task_id, dup);
          const mine = this.pending.get(accepted.task_id)!;
          this.pending.delete(accepted.task_id);
          this.slot(dup).promise.then(mine.resolve, mine.reject);
        }
        return true;
      }
      case "TaskView": {
        const view = envelope.payload as unknown as TaskView;
        if (!this.queries.answer(envelope.causation_id, view)) this.log("info", "sdk.answer_unclaimed", { task_id: view.task_id });
        return true;
      }
      default:
        this.log("info", "sdk.notice_ignored", { msg_type: envelope.type });
        return true;
    }
  }
}
