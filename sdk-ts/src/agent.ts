/**
 * An agent: a handler per capability, then `await agent.run()`.
 *
 * Lifecycle: connect → declare (or, with its own provisioned user, check) the inbox and
 * consume it → RegisterAgent → heartbeats → assignments run their handler, at most
 * `capacity` at once → on stop, drain: DeregisterAgent {drain: true}, reject new
 * assignments, let running tasks finish and every report be confirmed, stop heartbeats,
 * then DeregisterAgent {drain: false} and close. After a reconnect it registers again
 * (the registry may have counted it lost) and consumes its inbox again; unacked
 * assignments come back and are recognised as the attempts already running.
 */
import type * as amqp from "amqplib";
import { BUNDLE_CONTENT_TYPE } from "./bundle";
import { Execution, type Handler } from "./execution";
import { handleDelivery, type Incoming } from "./inbox";
import { type Lease, LeaseBook } from "./lease";
import { describeError, jsonLogger, type Logger } from "./log";
import { type AssignTask, CLASSIC_ARGUMENTS, earlierInboxArguments, type Envelope, inboxArguments, type LeaseAcquired, type LeaseLost, Names, type StopTask } from "./protocol";
import { ReliableSender } from "./sender";
import { brokerUser, serviceUsers, settingsFromEnv, type Settings } from "./settings";
import { type Probe, Transport } from "./transport";

export interface AgentOptions {
  capacity?: number;
  labels?: Record<string, string>;
  softwareVersion?: string;
  heartbeatIntervalS?: number;
  /** false: the workers send every notice alone, never in a bundle. */
  bundles?: boolean;
  /** Declare the inbox (default: unless the agent logs in as its own provisioned user). */
  declare?: boolean;
  /** How long a drain waits for running tasks before reporting them failed (AgentStopped). */
  drainTimeoutS?: number;
  /** How long a drain waits for the last reports' and the goodbye's confirms (default 60 s). */
  flushTimeoutS?: number;
  /** Broker users whose notices the inbox takes (default RALLY_SERVICE_USERS and our own user). */
  serviceUsers?: Iterable<string>;
  settings?: Partial<Settings>;
  logger?: Logger;
}

export class Agent {
  readonly capacity: number;
  readonly heartbeatIntervalS: number;
  readonly settings: Settings;
  draining = false;
  /** What the inbox has taken: deliveries, and how many of them were bundles. */
  readonly stats = { deliveries: 0, bundles: 0 };
  private readonly handlers = new Map<string, Handler>();
  private readonly running = new Map<string, Execution>();
  private readonly names: Names;
  private readonly log: Logger;
  private readonly user: string;
  private readonly trusted: Set<string>;
  private transport: Transport | undefined;
  private sender: ReliableSender | undefined;
  private book: LeaseBook | undefined;
  private heartbeat: NodeJS.Timeout | undefined;
  private stopping: Promise<void> | undefined;
  private stoppedResolve: (() => void) | undefined;

  constructor(readonly agentId: string, private readonly options: AgentOptions = {}) {
    this.capacity = options.capacity ?? 1;
    this.heartbeatIntervalS = options.heartbeatIntervalS ?? Number(process.env.RALLY_HEARTBEAT_S ?? 5);
    this.settings = settingsFromEnv(options.settings);
    this.names = new Names(this.settings.namespace);
    this.log = options.logger ?? jsonLogger({ agent_id: agentId });
    this.user = brokerUser(this.settings.url);
    this.trusted = new Set([...(options.serviceUsers ?? serviceUsers()), this.user]);
  }

  /** Register the handler of a capability: `agent.capability("crawl", async (task) => ...)`. */
  capability(name: string, handler: Handler): this {
    if (this.handlers.has(name)) throw new Error(`capability '${name}' already has a handler`);
    this.handlers.set(name, handler);
    return this;
  }

  get load(): number {
    return this.running.size;
  }

  get runningTaskIds(): string[] {
    return [...this.running.keys()];
  }

  /** Acquire a lease outside any task; renewed until `lease.release()`. */
  acquireLease(resource: string, options: { ttlS?: number; timeoutS?: number } = {}): Promise<Lease> {
    if (this.book === undefined) throw new Error("start the agent first");
    return this.book.acquire(resource, options.ttlS ?? 30, options.timeoutS);
  }

  async start(): Promise<this> {
    if (this.handlers.size === 0) throw new Error("an agent needs at least one capability handler");
    const transport = new Transport(this.settings.url, `agent ${this.agentId}`, this.log);
    this.transport = transport;
    await transport.connect();
    this.sender = new ReliableSender(transport, this.names, this.agentId, this.user, this.log);
    this.book = new LeaseBook(this.agentId, this.sender, this.log);
    const ownUser = this.user === this.agentId;
    const declare = this.options.declare ?? !ownUser;
    await transport.consume(
      (channel, probe) => this.setupInbox(channel, probe, declare),
      (msg, channel) => {
        this.stats.deliveries++;
        if (msg.properties.contentType === BUNDLE_CONTENT_TYPE) this.stats.bundles++;
        return handleDelivery(msg, channel, (incoming) => this.dispatch(incoming), this.log);
      },
      Math.min(1000, 4 * this.capacity + 16),
    );
    transport.onReconnect(() => {
      if (!this.draining && this.sender !== undefined) this.sender.deliverSoon(this.sender.wrap("RegisterAgent", this.manifest()));
    });
    await this.sender.deliver(this.sender.wrap("RegisterAgent", this.manifest()));
    this.heartbeat = setInterval(() => this.beat(), this.heartbeatIntervalS * 1000);
    this.log("info", "sdk.agent_started", { capabilities: [...this.handlers.keys()], capacity: this.capacity });
    return this;
  }

  /** Start, serve until `stop()`, SIGINT or SIGTERM, drain, close. */
  async run(): Promise<void> {
    await this.start();
    const onSignal = (): void => void this.stop();
    process.once("SIGINT", onSignal);
    process.once("SIGTERM", onSignal);
    try {
      await new Promise<void>((resolve) => {
        this.stoppedResolve = resolve;
        if (this.stopping !== undefined) void this.stopping.then(resolve);
      });
    } finally {
      process.removeListener("SIGINT", onSignal);
      process.removeListener("SIGTERM", onSignal);
    }
  }

  /** Drain and leave; resolves once the agent has left. */
  stop(timeoutS?: number): Promise<void> {
    this.stopping ??= this.drain(timeoutS ?? this.options.drainTimeoutS).finally(() => this.stoppedResolve?.());
    return this.stopping;
  }

  /** Close the connection without draining (as a crash would, but without killing the process). */
  async abandon(): Promise<void> {
    clearInterval(this.heartbeat);
    this.book?.close();
    this.sender?.cancelAll();
    await this.transport?.close();
  }

  private manifest() {
    return {
      agent_id: this.agentId,
      capabilities: [...this.handlers.keys()],
      capacity: this.capacity,
      labels: this.options.labels ?? {},
      software_version: this.options.softwareVersion ?? "unknown",
      heartbeat_interval_s: this.heartbeatIntervalS,
      bundles: this.options.bundles ?? true,
    };
  }

  private async setupInbox(channel: amqp.Channel, probe: Probe, declare: boolean): Promise<string> {
    const inbox = this.names.inboxQueue(this.agentId);
    if (!declare) {
      await channel.checkQueue(inbox); // declared at provisioning; we may not declare anything
      return inbox;
    }
    // the DLQ every inbox shares first, so a letter dead-lettered the moment the inbox exists has somewhere to go
    await this.declareDlq(channel, probe, this.names.inboxDlq, this.names.inboxDlq);
    const inboxArgs = await kept(probe, inbox, [inboxArguments(this.names), ...earlierInboxArguments(this.names, this.agentId)]);
    if (inboxArgs["x-dead-letter-routing-key"] === inbox) {
      await this.declareDlq(channel, probe, `${inbox}.dlq`, inbox); // an earlier release's inbox: its own DLQ
    }
    await channel.assertQueue(inbox, { durable: true, arguments: inboxArgs });
    await channel.bindQueue(inbox, this.names.inbox, this.agentId);
    await channel.bindQueue(inbox, this.names.requeue, `*.${inbox}`);
    return inbox;
  }

  /** A DLQ bound to the DLX with `key`: classic v2, or quorum where an earlier release made it so. */
  private async declareDlq(channel: amqp.Channel, probe: Probe, dlq: string, key: string): Promise<void> {
    const args = await kept(probe, dlq, [{ ...CLASSIC_ARGUMENTS }, { "x-queue-type": "quorum" }]);
    await channel.assertQueue(dlq, { durable: true, arguments: args });
    await channel.bindQueue(dlq, this.names.dlx, key);
  }

  private beat(): void {
    if (this.sender === undefined) return;
    const beat = this.sender.wrap("Heartbeat", { agent_id: this.agentId, load: this.load, running: this.runningTaskIds });
    // a beat that cannot go out now is stale by the next one: never retried
    this.sender.sendOnce(beat, this.heartbeatIntervalS * 1000).catch((err: unknown) =>
      this.log("warning", "sdk.heartbeat_missed", { error: describeError(err) }),
    );
  }

  private dispatch(incoming: Incoming): boolean {
    const { envelope } = incoming;
    if (incoming.userId === undefined || !this.trusted.has(incoming.userId)) {
      this.log("warning", "sdk.notice_refused", { msg_type: envelope.type, broker_user: incoming.userId, why: "not published by a service user" });
      return true; // acked and dropped: not ours to dead-letter
    }
    switch (envelope.type) {
      case "AssignTask":
        this.onAssign(envelope as unknown as Envelope<AssignTask>);
        return true;
      case "StopTask":
        this.onStop(envelope.payload as unknown as StopTask);
        return true;
      case "LeaseAcquired":
        this.book?.onAcquired(envelope.payload as unknown as LeaseAcquired);
        return true;
      case "LeaseLost":
        this.book?.onLost(envelope.payload as unknown as LeaseLost);
        return true;
      default:
        // not for an agent (a TaskOutcome, say): acked and logged, never dead-lettered by us
        this.log("warning", "sdk.notice_ignored", { msg_type: envelope.type, message_id: incoming.messageId });
        return true;
    }
  }

  private onAssign(envelope: Envelope<AssignTask>): void {
    const assign = envelope.payload;
    const sender = this.sender!;
    const current = this.running.get(assign.task_id);
    let reason: string | undefined;
    if (current !== undefined && current.attempt >= assign.attempt) {
      this.log("info", "sdk.assignment", { task_id: assign.task_id, attempt: assign.attempt, verdict: "duplicate" });
      return; // a redelivered assignment: that attempt already runs
    }
    if (this.draining) reason = "agent is draining";
    else if (!this.handlers.has(assign.capability)) reason = `no handler for capability '${assign.capability}'`;
    else if (current === undefined && this.running.size >= this.capacity) reason = `agent is full (${this.running.size}/${this.capacity} running)`;
    this.log("info", "sdk.assignment", { task_id: assign.task_id, attempt: assign.attempt, verdict: reason ? "reject" : "run", reason });
    if (reason !== undefined) {
      const reject = { task_id: assign.task_id, agent_id: this.agentId, attempt: assign.attempt, fencing_token: assign.fencing_token, reason };
      sender.deliverSoon(sender.wrap("RejectAssignment", reject, envelope));
      return;
    }
    current?.cancel("stop"); // a newer attempt of a task we still run: the old one is fenced off
    const execution = new Execution(envelope, this.handlers.get(assign.capability)!, this.agentId, sender, this.book!, this.log);
    this.running.set(assign.task_id, execution);
    void execution.done.then(() => {
      if (this.running.get(assign.task_id) === execution) this.running.delete(assign.task_id);
    });
    execution.start();
  }

  private onStop(stop: StopTask): void {
    const execution = this.running.get(stop.task_id);
    if (execution === undefined || execution.attempt !== stop.attempt) {
      this.log("info", "sdk.stop_ignored", { task_id: stop.task_id, attempt: stop.attempt });
      return;
    }
    this.log("info", "sdk.stop_task", { task_id: stop.task_id, reason: stop.reason });
    execution.cancel("stop");
  }

  private async drain(timeoutS: number | undefined): Promise<void> {
    const sender = this.sender;
    const transport = this.transport;
    if (sender === undefined || transport === undefined) return;
    this.log("info", "sdk.agent_draining", { running: this.load });
    this.draining = true;
    sender.deliverSoon(sender.wrap("DeregisterAgent", { agent_id: this.agentId, drain: true }));
    const executions = [...this.running.values()];
    if (executions.length > 0) {
      const all = Promise.all(executions.map((e) => e.done));
      if (timeoutS === undefined) await all;
      else {
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([all, new Promise<void>((resolve) => (timer = setTimeout(resolve, timeoutS * 1000)))]);
        clearTimeout(timer);
        for (const e of this.running.values()) e.cancel("shutdown");
      }
    }
    this.book?.close();
    clearInterval(this.heartbeat); // no heartbeat may follow the goodbye and bring the agent back
    const flushed = (async () => {
      await sender.flush();
      await sender.deliver(sender.wrap("DeregisterAgent", { agent_id: this.agentId, drain: false }));
    })().then(() => true, () => false);
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), (this.options.flushTimeoutS ?? 60) * 1000)));
    if (!(await Promise.race([flushed, timedOut]))) {
      this.log("error", "sdk.agent_left_unconfirmed", { pending: sender.pendingCount });
      sender.cancelAll();
    }
    clearTimeout(timer);
    await transport.stopConsumers();
    await transport.close();
    this.log("info", "sdk.agent_stopped", {});
  }
}

/**
 * The first of `candidates` that durable queue `queue` takes (creating it with the first if it
 * is new), as broker/declare.py's `_kept` does; none taken: the first, for the real declare to
 * fail in the broker's words. Each try is on a throwaway channel: a PRECONDITION_FAILED closes it.
 */
async function kept(probe: Probe, queue: string, candidates: Array<Record<string, unknown>>): Promise<Record<string, unknown>> {
  // the broker names the first argument that differs, not always the one that matters: ask by declaring
  for (const args of candidates) {
    const taken = await probe((ch) => ch.assertQueue(queue, { durable: true, arguments: args })).then(
      () => true,
      (err: unknown) => {
        if (/PRECONDITION_FAILED/.test(String(err))) return false;
        throw err;
      },
    );
    if (taken) return args;
  }
  return candidates[0]!;
}
