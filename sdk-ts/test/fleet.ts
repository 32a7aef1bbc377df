/**
 * The real fleet for the broker tests: `rally worker all` in a private namespace with a
 * temporary SQLite store, started before and stopped after, then the namespace's queues
 * and exchanges deleted. RALLY_BIN names the rally executable (default ../.venv/bin/rally);
 * RALLY_AMQP_URL the broker.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, openSync, readFileSync, rmSync } from "node:fs";
import { createServer, type Server, type Socket, connect as tcpConnect } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import * as amqp from "amqplib";
import { DEFAULT_AMQP_URL, nodeUrls } from "../src/settings";
import { sleep } from "../src/transport";

export const SDK_ROOT = resolve(__dirname, "..", "..");
export const REPO_ROOT = resolve(SDK_ROOT, "..");
export const AMQP_URL = process.env.RALLY_AMQP_URL ?? DEFAULT_AMQP_URL;
/** The first node of AMQP_URL, for the test's own plain connections and its proxy. */
export const FIRST_NODE_URL = nodeUrls(AMQP_URL)[0]!;
export const RALLY_BIN = process.env.RALLY_BIN ?? join(REPO_ROOT, ".venv", "bin", "rally");
const WORKER_QUEUES = ["registry", "tasks", "allocator"];
const DELAY_TIERS = [100, 500, 2000, 10000, 60000];
const EXCHANGES = ["commands", "events", "inbox", "retry", "requeue", "dlx"];

export class Fleet {
  readonly namespace = `ts-${randomBytes(5).toString("hex")}`;
  readonly dir = mkdtempSync(join(tmpdir(), "rally-ts-"));
  readonly inboxes = new Set<string>();
  private proc: ChildProcess | undefined;

  constructor(private readonly extraEnv: Record<string, string> = {}) {}

  get logPath(): string {
    return join(this.dir, "workers.log");
  }

  env(): Record<string, string> {
    return {
      ...(process.env as Record<string, string>),
      RALLY_AMQP_URL: AMQP_URL,
      RALLY_NAMESPACE: this.namespace,
      RALLY_STORE_URL: `sqlite:///${join(this.dir, "rally.db")}`,
      RALLY_LOG_LEVEL: "WARNING",
      ...this.extraEnv,
    };
  }

  async start(): Promise<void> {
    const log = openSync(this.logPath, "a");
    this.proc = spawn(RALLY_BIN, ["worker", "all"], { env: this.env(), stdio: ["ignore", log, log], detached: true });
    const deadline = Date.now() + 60_000;
    for (;;) {
      if (this.proc.exitCode !== null) throw new Error(`rally worker all exited ${this.proc.exitCode}: ${this.logTail()}`);
      if (await this.ready()) return;
      if (Date.now() > deadline) throw new Error(`workers not ready within 60 s: ${this.logTail()}`);
      await sleep(250);
    }
  }

  /** Every worker queue exists and has its consumer. */
  private async ready(): Promise<boolean> {
    try {
      return await withChannel(async (ch) => {
        for (const w of WORKER_QUEUES) {
          const q = await ch.checkQueue(`${this.namespace}.q.${w}`);
          if (q.consumerCount < 1) return false;
        }
        return true;
      });
    } catch {
      return false;
    }
  }

  logTail(chars = 3000): string {
    try {
      return readFileSync(this.logPath, "utf8").slice(-chars);
    } catch {
      return "";
    }
  }

  async stop(): Promise<void> {
    const proc = this.proc;
    if (proc !== undefined && proc.exitCode === null && proc.pid !== undefined) {
      const exited = new Promise<void>((res) => proc.once("exit", () => res()));
      process.kill(-proc.pid, "SIGTERM");
      const stopped = await Promise.race([exited.then(() => true), sleep(20_000).then(() => false)]);
      if (!stopped) {
        process.kill(-proc.pid, "SIGKILL");
        await exited;
      }
    }
    await this.deleteNamespace();
    rmSync(this.dir, { recursive: true, force: true });
  }

  private async deleteNamespace(): Promise<void> {
    const ns = this.namespace;
    const queues = [
      ...WORKER_QUEUES.flatMap((w) => [`${ns}.q.${w}`, `${ns}.q.${w}.dlq`]),
      // the other registry shards' queues, when RALLY_REGISTRY_SHARDS runs more than one
      ...Array.from({ length: Math.max(0, this.registryShards() - 1) }, (_, k) => [`${ns}.q.registry.${k + 1}`, `${ns}.q.registry.${k + 1}.dlq`]).flat(),
      ...DELAY_TIERS.map((ms) => `${ns}.delay.t${ms}ms`),
      `${ns}.clients.dlq`,
      `${ns}.inboxes.dlq`, // the agent inboxes' shared DLQ, where the topology has one
      ...[...this.inboxes].flatMap((id) => [`${ns}.inbox.${id}`, `${ns}.inbox.${id}.dlq`]),
    ];
    await withChannel(async (ch) => {
      for (const q of queues) await ch.deleteQueue(q);
      for (const e of EXCHANGES) await ch.deleteExchange(`${ns}.${e}`);
    }).catch(() => undefined);
  }

  private registryShards(): number {
    return Number(this.env().RALLY_REGISTRY_SHARDS ?? "1") || 1;
  }

  /** An agent id in this fleet whose inbox is removed at the end. */
  agentId(prefix: string): string {
    const id = `${prefix}-${randomBytes(3).toString("hex")}`;
    this.inboxes.add(id);
    return id;
  }

  /** The task's history as `rally task show --json` prints it. */
  async history(taskId: string): Promise<Array<{ type: string; data: Record<string, unknown> }>> {
    const out = await run(RALLY_BIN, ["task", "show", taskId, "--json"], this.env());
    const parsed = JSON.parse(out) as Record<string, unknown>;
    const events = (parsed.events ?? parsed.timeline ?? []) as Array<Record<string, unknown>>;
    return events.map((e) => ({ type: String(e.type), data: (e.data ?? e) as Record<string, unknown> }));
  }
}

export async function withChannel<T>(fn: (ch: amqp.Channel) => Promise<T>): Promise<T> {
  const conn = await amqp.connect(FIRST_NODE_URL);
  try {
    const ch = await conn.createChannel();
    ch.on("error", () => undefined);
    return await fn(ch);
  } finally {
    await conn.close().catch(() => undefined);
  }
}

export function run(cmd: string, args: string[], env: Record<string, string>, timeoutMs = 600_000): Promise<string> {
  return new Promise((res, rej) => {
    const child = spawn(cmd, args, { env, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.stderr.on("data", (d: Buffer) => (err += d.toString()));
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.on("exit", (code) => {
      clearTimeout(timer);
      if (code === 0) res(out);
      else rej(new Error(`${cmd} ${args.join(" ")} exited ${code}\n${out}\n${err.slice(-4000)}`));
    });
  });
}

/** A TCP proxy to the broker whose connections the test can cut. */
export class Proxy {
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();
  port = 0;

  async start(): Promise<string> {
    const target = new URL(FIRST_NODE_URL);
    this.server = createServer((client) => {
      const upstream = tcpConnect(Number(target.port || 5672), target.hostname);
      for (const s of [client, upstream]) {
        this.sockets.add(s);
        s.on("close", () => this.sockets.delete(s));
        s.on("error", () => undefined);
      }
      client.pipe(upstream);
      upstream.pipe(client);
      client.on("close", () => upstream.destroy());
      upstream.on("close", () => client.destroy());
    });
    await new Promise<void>((res) => this.server!.listen(0, "127.0.0.1", res));
    const address = this.server.address();
    this.port = typeof address === "object" && address !== null ? address.port : 0;
    const url = new URL(FIRST_NODE_URL);
    url.hostname = "127.0.0.1";
    url.port = String(this.port);
    return url.toString();
  }

  /** How many client connections pass through it now. */
  get connections(): number {
    return this.sockets.size / 2; // a client's socket and its upstream's
  }

  /** Cut every connection through the proxy (it keeps accepting new ones). */
  cut(): number {
    const n = this.sockets.size;
    for (const s of this.sockets) s.destroy();
    return n;
  }

  async close(): Promise<void> {
    this.cut();
    await new Promise<void>((res) => (this.server ? this.server.close(() => res()) : res()));
  }
}

export async function eventually(check: () => boolean | Promise<boolean>, timeoutMs = 20_000, what = "condition"): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`${what} not met within ${timeoutMs} ms`);
    await sleep(50);
  }
}
