/**
 * Reports that get through: each command is encoded once and its bytes published again
 * and again, with the same message id, until the broker confirms them. A copy that did
 * reach the broker before a drop is then a duplicate the workers discard by id, so a
 * report counts exactly once. Deliveries run in the background and are handed to the one
 * publisher channel in the order they were made, so one task's reports keep their order.
 */
import { describeError, type Logger } from "./log";
import { type Envelope, JSON_CONTENT_TYPE, MAX_MESSAGE_BYTES, Names, commandRoutingKey, traceparent, wrap } from "./protocol";
import { sleep, type Transport } from "./transport";

export class Cancelled extends Error {
  override name = "Cancelled";
}

export class ReliableSender {
  private readonly pending = new Set<Promise<void>>();
  private cancelled = false;

  constructor(
    private readonly transport: Transport,
    private readonly names: Names,
    readonly sender: string,
    private readonly userId: string,
    private readonly log: Logger,
  ) {}

  wrap<P>(type: string, payload: P, causedBy?: Envelope<unknown>): Envelope<P> {
    return wrap(type, payload, this.sender, causedBy);
  }

  /** Publish once: for a heartbeat, which is stale by the next one and never retried. */
  async sendOnce(envelope: Envelope<unknown>, timeoutMs?: number): Promise<void> {
    const body = encode(envelope);
    await this.transport.publish(this.names.commands, commandRoutingKey(envelope), body, this.options(envelope, timeoutMs));
  }

  /** Publish this envelope until the broker confirms it (or the sender is cancelled). */
  async deliver(envelope: Envelope<unknown>): Promise<void> {
    const body = encode(envelope); // built once: every retry sends these bytes, this id
    const key = commandRoutingKey(envelope);
    const options = this.options(envelope);
    for (let attempt = 1; ; attempt++) {
      if (this.cancelled) throw new Cancelled(`${envelope.type} ${envelope.id} not delivered`);
      try {
        await this.transport.publish(this.names.commands, key, body, options);
        if (attempt > 1) this.log("info", "sdk.publish_recovered", { msg_type: envelope.type, attempt });
        return;
      } catch (err) {
        const delay = Math.min(5000, 200 * 2 ** Math.min(attempt - 1, 10));
        this.log(attempt === 1 ? "info" : "warning", "sdk.publish_retry", {
          msg_type: envelope.type, message_id: envelope.id, attempt, delay_ms: delay, error: describeError(err),
        });
        await sleep(delay);
      }
    }
  }

  /** Deliver in the background; returns the delivery, which `flush()` also waits for. */
  deliverSoon(envelope: Envelope<unknown>): Promise<void> {
    const delivery = this.deliver(envelope).catch((err: unknown) => {
      if (!(err instanceof Cancelled)) this.log("error", "sdk.publish_dropped", { error: describeError(err) });
    });
    this.pending.add(delivery);
    void delivery.finally(() => this.pending.delete(delivery));
    return delivery;
  }

  get pendingCount(): number {
    return this.pending.size;
  }

  /** Wait until every background delivery is confirmed. */
  async flush(): Promise<void> {
    while (this.pending.size > 0) await Promise.all([...this.pending]);
  }

  cancelAll(): void {
    this.cancelled = true;
  }

  private options(envelope: Envelope<unknown>, timeoutMs?: number) {
    return {
      messageId: envelope.id,
      type: envelope.type,
      correlationId: envelope.correlation_id,
      contentType: JSON_CONTENT_TYPE,
      userId: this.userId,
      headers: { traceparent: traceparent(envelope.correlation_id) },
      ...(timeoutMs !== undefined ? { timeoutMs } : {}),
    };
  }
}

export function encode(envelope: Envelope<unknown>): Buffer {
  const body = Buffer.from(JSON.stringify(envelope), "utf8");
  if (body.length > MAX_MESSAGE_BYTES) {
    throw new Error(`${envelope.type} message is ${body.length} bytes, over the limit of ${MAX_MESSAGE_BYTES}`);
  }
  return body;
}
