/**
 * One AMQP connection that comes back: a confirm channel for publishing, one channel per
 * consumer, and after a drop a reconnect (with backoff) that sets every consumer up again.
 * Publishing never waits for a connection: it fails at once while there is none, and the
 * caller (the ReliableSender) retries with the same bytes.
 *
 * With several nodes in the URL (nodes.ts) it starts at a random node, so a fleet's
 * connections spread over the cluster, and tries the others in the order written, wrapping
 * around, until one answers. After a loss it tries the next node first: the node just lost
 * is asked again only after every other one (as broker/connection.py does).
 */
import * as amqp from "amqplib";
import { describeError, type Logger } from "./log";
import { redact } from "./nodes";
import { nodeUrls } from "./settings";

/** How long one node may take to open a connection before the next is tried. */
export const CONNECT_TIMEOUT_MS = 10_000;

export interface PublishOptions {
  messageId: string;
  type?: string;
  correlationId?: string;
  contentType?: string;
  headers?: Record<string, unknown>;
  userId?: string;
  timeoutMs?: number;
}

/** Runs `fn` on a channel of its own (a failed declare closes its channel, not the consumer's). */
export type Probe = <T>(fn: (channel: amqp.Channel) => Promise<T>) => Promise<T>;
export type ConsumeSetup = (channel: amqp.Channel, probe: Probe) => Promise<string>;
export type OnMessage = (message: amqp.ConsumeMessage, channel: amqp.Channel) => Promise<void> | void;

interface ConsumerSpec {
  setup: ConsumeSetup;
  onMessage: OnMessage;
  prefetch: number;
  exclusive: boolean;
  channel?: amqp.Channel;
  tag?: string;
}

export class NotConnected extends Error {
  override name = "NotConnected";
}

/** No node of the URL answered; the message names each (password hidden) and why. */
export class BrokerUnavailable extends Error {
  override name = "BrokerUnavailable";
}

/** Where a process starts: anywhere, so a fleet's connections spread over the cluster. */
export function firstNode(count: number, random: () => number = Math.random): number {
  return count > 1 ? Math.floor(random() * count) % count : 0;
}

/** The order nodes are tried in: from `start`, in the order written, wrapping around. */
export function nodeOrder(count: number, start: number): number[] {
  return Array.from({ length: count }, (_, step) => (start + step) % count);
}

export class Transport {
  private model: amqp.ChannelModel | undefined;
  private publisher: amqp.ConfirmChannel | undefined;
  private consumers: ConsumerSpec[] = [];
  private reconnectCallbacks: Array<() => void> = [];
  private closing = false;
  private reconnecting: Promise<void> | undefined;
  private returned = new Set<string>();
  readonly urls: string[];
  /** The node in use, or the last one connected to; -1 before the first connection. */
  private index = -1;

  constructor(url: string, private readonly name: string, private readonly log: Logger) {
    this.urls = nodeUrls(url);
  }

  get connected(): boolean {
    return this.publisher !== undefined;
  }

  /** host:port of the node connected to (or last connected to); undefined before the first. */
  get node(): string | undefined {
    const url = this.urls[this.index];
    return url === undefined ? undefined : new URL(url).host;
  }

  /** Connect to the first node that answers (see the module's comment for the order). */
  async connect(): Promise<void> {
    const count = this.urls.length;
    const start = this.index < 0 ? firstNode(count) : (this.index + 1) % count;
    const failures: string[] = [];
    for (const index of nodeOrder(count, start)) {
      const url = this.urls[index]!;
      try {
        await this.open(url);
        this.index = index;
        this.log("debug", "sdk.connected", { connection: this.name, node: this.node });
        return;
      } catch (err) {
        failures.push(`${redact(url)} (${describeError(err)})`);
      }
    }
    throw new BrokerUnavailable(`cannot reach RabbitMQ at ${failures.join("; ")}; start it or set RALLY_AMQP_URL`);
  }

  onReconnect(callback: () => void): void {
    this.reconnectCallbacks.push(callback);
  }

  private async open(url: string): Promise<void> {
    const model = await amqp.connect(url, { clientProperties: { connection_name: this.name }, timeout: CONNECT_TIMEOUT_MS });
    try {
      const publisher = await model.createConfirmChannel();
      publisher.on("return", (msg: amqp.Message) => {
        const id = msg.properties.messageId as string | undefined;
        if (id !== undefined) this.returned.add(id);
      });
      publisher.on("error", () => undefined); // closes follow, handled below
      for (const consumer of this.consumers) await this.startConsumer(model, consumer);
      model.on("error", (err: unknown) => this.log("warning", "sdk.connection_error", { error: describeError(err) }));
      model.on("close", () => this.dropped(model));
      publisher.on("close", () => {
        if (this.model === model && !this.closing) model.close().catch(() => undefined);
      });
      this.model = model;
      this.publisher = publisher;
    } catch (err) {
      await model.close().catch(() => undefined);
      throw err;
    }
  }

  private dropped(model: amqp.ChannelModel): void {
    if (this.model !== model) return;
    this.model = undefined;
    this.publisher = undefined;
    for (const consumer of this.consumers) {
      consumer.channel = undefined;
      consumer.tag = undefined;
    }
    if (this.closing) return;
    this.log("warning", "sdk.connection_lost", { connection: this.name, node: this.node });
    this.reconnecting ??= this.reconnectLoop().finally(() => {
      this.reconnecting = undefined;
    });
  }

  private async reconnectLoop(): Promise<void> {
    let delay = 100;
    while (!this.closing) {
      await sleep(delay);
      if (this.closing) return;
      try {
        await this.connect();
      } catch (err) {
        this.log("info", "sdk.reconnect_failed", { error: describeError(err), delay_ms: delay });
        delay = Math.min(5000, delay * 2);
        continue;
      }
      this.log("warning", "sdk.reconnected", { connection: this.name, node: this.node });
      for (const callback of this.reconnectCallbacks) {
        try {
          callback();
        } catch (err) {
          this.log("error", "sdk.reconnect_callback_failed", { error: describeError(err) });
        }
      }
      return;
    }
  }

  /** A channel of its own for one-off work (a failed passive check closes its channel). */
  async withChannel<T>(fn: (channel: amqp.Channel) => Promise<T>): Promise<T> {
    if (this.model === undefined) throw new NotConnected("not connected");
    const channel = await this.model.createChannel();
    channel.on("error", () => undefined);
    try {
      return await fn(channel);
    } finally {
      await channel.close().catch(() => undefined);
    }
  }

  /** Consume a queue now and again after every reconnect; `setup` declares or checks it. */
  async consume(setup: ConsumeSetup, onMessage: OnMessage, prefetch: number, exclusive = false): Promise<void> {
    const spec: ConsumerSpec = { setup, onMessage, prefetch, exclusive };
    this.consumers.push(spec);
    if (this.model !== undefined) await this.startConsumer(this.model, spec);
  }

  private async startConsumer(model: amqp.ChannelModel, spec: ConsumerSpec): Promise<void> {
    const channel = await model.createChannel();
    channel.on("error", (err: unknown) => this.log("warning", "sdk.channel_error", { error: describeError(err) }));
    channel.on("close", () => {
      if (spec.channel === channel && this.model === model && !this.closing) {
        // a consumer channel closed under a live connection: start over on a new connection
        model.close().catch(() => undefined);
      }
    });
    const probe: Probe = async (fn) => {
      const side = await model.createChannel();
      side.on("error", () => undefined);
      try {
        return await fn(side);
      } finally {
        await side.close().catch(() => undefined);
      }
    };
    const queue = await spec.setup(channel, probe);
    await channel.prefetch(spec.prefetch);
    const reply = await channel.consume(
      queue,
      (msg) => {
        if (msg === null) return; // cancelled by the broker (queue deleted): the close follows
        Promise.resolve(spec.onMessage(msg, channel)).catch((err: unknown) =>
          this.log("error", "sdk.consume_failed", { error: describeError(err) }),
        );
      },
      { noAck: false, exclusive: spec.exclusive },
    );
    spec.channel = channel;
    spec.tag = reply.consumerTag;
  }

  /** Publish and wait for the broker's confirm; rejects on nack, return, drop or time-out. */
  publish(exchange: string, routingKey: string, body: Buffer, options: PublishOptions): Promise<void> {
    const channel = this.publisher;
    if (channel === undefined) return Promise.reject(new NotConnected("not connected"));
    const timeoutMs = options.timeoutMs ?? 10_000;
    return new Promise<void>((resolve, reject) => {
      let settled = false;
      const timer = setTimeout(() => finish(new Error(`no confirm within ${timeoutMs} ms`)), timeoutMs);
      const finish = (err: Error | null): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (err === null && this.returned.delete(options.messageId)) {
          reject(new Error(`unroutable: ${exchange} ${routingKey}`));
        } else if (err !== null) {
          reject(err);
        } else {
          resolve();
        }
      };
      const props: amqp.Options.Publish = {
        messageId: options.messageId,
        contentType: options.contentType ?? "application/json",
        deliveryMode: 2,
        persistent: true,
        mandatory: true,
        headers: options.headers ?? {},
      };
      if (options.type !== undefined) props.type = options.type;
      if (options.correlationId !== undefined) props.correlationId = options.correlationId;
      if (options.userId !== undefined) props.userId = options.userId;
      try {
        channel.publish(exchange, routingKey, body, props, (err: unknown) => {
          finish(err === null || err === undefined ? null : err instanceof Error ? err : new Error(String(err)));
        });
      } catch (err) {
        finish(err instanceof Error ? err : new Error(String(err)));
      }
    });
  }

  async stopConsumers(): Promise<void> {
    for (const spec of this.consumers) {
      if (spec.channel !== undefined && spec.tag !== undefined) {
        await spec.channel.cancel(spec.tag).catch(() => undefined);
      }
    }
  }

  async close(): Promise<void> {
    this.closing = true;
    const model = this.model;
    this.model = undefined;
    this.publisher = undefined;
    if (model !== undefined) await model.close().catch(() => undefined);
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
