/**
 * The wire contract as docs/protocol.md states it: envelopes, the routes of commands,
 * the payloads an agent and a client send and take, and the names under a namespace.
 */
import { randomBytes, randomUUID } from "node:crypto";
import { registryRoutingKey } from "./slots";

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

export interface Envelope<P = Record<string, unknown>> {
  id: string;
  type: string;
  version: number;
  correlation_id: string;
  causation_id: string | null;
  sender: string;
  sent_at: string;
  payload: P;
}

export const JSON_CONTENT_TYPE = "application/json";
export const MAX_MESSAGE_BYTES = 1024 * 1024;

/** The route (first word of the routing key) of every command an agent or a client sends. */
const ROUTES: Record<string, string> = {
  RegisterAgent: "registry",
  Heartbeat: "registry",
  DeregisterAgent: "registry",
  ReportTaskStarted: "tasks",
  ReportTaskProgress: "tasks",
  ReportTaskSucceeded: "tasks",
  ReportTaskFailed: "tasks",
  RejectAssignment: "tasks",
  SubmitTask: "tasks",
  CancelTask: "tasks",
  QueryTask: "tasks",
  AcquireLease: "allocator",
  RenewLease: "allocator",
  ReleaseLease: "allocator",
};

/** `<route>.<Type>`: a command's routing key, before any slot (see `commandRoutingKey`). */
export function routingKey(type: string): string {
  const route = ROUTES[type];
  if (route === undefined) throw new Error(`${type} is not a command an agent or client sends`);
  return `${route}.${type}`;
}

/**
 * Where a command is published: a registry command carries its agent's slot
 * (`registry.<Type>.<slot>`, so it reaches the registry shard that owns the agent directly),
 * every other command `<route>.<Type>`.
 */
export function commandRoutingKey(envelope: Envelope<unknown>): string {
  const key = routingKey(envelope.type);
  const agentId = (envelope.payload as { agent_id?: unknown } | null)?.agent_id;
  if (ROUTES[envelope.type] === "registry" && typeof agentId === "string") {
    return registryRoutingKey(envelope.type, agentId);
  }
  return key;
}

/**
 * A new envelope. A message caused by another (a report for an assignment) takes its
 * correlation id and names it as the cause; anything else starts a piece of work of its
 * own, whose correlation id is its own id.
 */
export function wrap<P>(type: string, payload: P, sender: string, causedBy?: Envelope<unknown>): Envelope<P> {
  const id = randomUUID();
  return {
    id,
    type,
    version: 1,
    correlation_id: causedBy ? causedBy.correlation_id : id,
    causation_id: causedBy ? causedBy.id : null,
    sender,
    sent_at: new Date().toISOString(),
    payload,
  };
}

/** W3C trace context whose trace id is the correlation id, as the workers' traces are. */
export function traceparent(correlationId: string): string {
  const trace = correlationId.replace(/-/g, "").toLowerCase().padEnd(32, "0").slice(0, 32);
  return `00-${trace}-${randomBytes(8).toString("hex")}-01`;
}

export class MalformedMessage extends Error {
  override name = "MalformedMessage";
}

/** Parse an envelope just far enough to route it; the handlers check their own fields. */
export function parseEnvelope(body: Buffer): Envelope {
  if (body.length > MAX_MESSAGE_BYTES) throw new MalformedMessage(`message is ${body.length} bytes, over 1 MiB`);
  let obj: unknown;
  try {
    obj = JSON.parse(body.toString("utf8"));
  } catch (err) {
    throw new MalformedMessage(`body is not valid JSON: ${(err as Error).message}`);
  }
  if (typeof obj !== "object" || obj === null || Array.isArray(obj)) throw new MalformedMessage("body is not a JSON object");
  const env = obj as Record<string, unknown>;
  for (const key of ["id", "type", "correlation_id", "sender", "sent_at"]) {
    if (typeof env[key] !== "string") throw new MalformedMessage(`envelope has no string '${key}'`);
  }
  if (typeof env.payload !== "object" || env.payload === null || Array.isArray(env.payload)) {
    throw new MalformedMessage("envelope has no payload object");
  }
  return env as unknown as Envelope;
}

// ---- payloads ----
export interface AssignTask {
  task_id: string;
  capability: string;
  payload: Json;
  attempt: number;
  fencing_token: number;
  timeout_s: number;
  leases?: string[];
}
export interface StopTask {
  task_id: string;
  attempt: number;
  reason: string;
}
export interface LeaseAcquired {
  resource: string;
  lease_id: string;
  fencing_token: number;
  expires_at: string;
}
export interface LeaseLost {
  resource: string;
  lease_id: string;
  fencing_token: number;
  reason: string;
}
export interface TaskOutcome {
  task_id: string;
  state: "succeeded" | "cancelled" | "dead";
  attempt: number;
  result?: Json;
  error?: string | null;
}
export interface TaskRefused {
  task_id: string;
  reason: string;
  detail?: string;
}
export interface TaskAccepted {
  task_id: string;
  duplicate_of?: string | null;
}
/** contracts/tasks.py TaskState. */
export type TaskState = "pending" | "assigned" | "running" | "succeeded" | "failed" | "cancelled" | "dead";
/** One recorded event of a task, as a person reads it (contracts/queries.py TimelineEntry). */
export interface TimelineEntry {
  version: number;
  type: string;
  at: string;
  summary: string;
}
/** The answer to QueryTask: the task as the task manager's own fold has it now. */
export interface TaskView {
  task_id: string;
  /** false: no such task, or not the asker's to read */
  found: boolean;
  state?: TaskState | null;
  capability?: string | null;
  attempt?: number;
  agent_id?: string | null;
  result?: Json;
  error?: string | null;
  stream_version?: number;
  updated_at?: string | null;
  /** the latest events, oldest first (at most 200; `earlier_events` counts those left out) */
  timeline?: TimelineEntry[];
  earlier_events?: number;
  result_omitted?: boolean;
  /** its history left the hot store: `state` is its final one, with no timeline */
  expired?: boolean;
}

// ---- names ----
export class Names {
  constructor(readonly namespace: string) {}
  get commands(): string { return `${this.namespace}.commands`; }
  get inbox(): string { return `${this.namespace}.inbox`; }
  get dlx(): string { return `${this.namespace}.dlx`; }
  get requeue(): string { return `${this.namespace}.requeue`; }
  inboxQueue(agentId: string): string { return `${this.namespace}.inbox.${agentId}`; }
  /** The dead-letter queue every agent inbox shares (its name is also its dead-letter key). */
  get inboxDlq(): string { return `${this.namespace}.inboxes.dlq`; }
  clientQueue(clientId: string): string { return `${this.namespace}.client.${clientId}`; }
}

export const INBOX_EXPIRES_MS = 24 * 3600 * 1000;
export const INBOX_DELIVERY_LIMIT = 10;

/** The arguments of a durable classic v2 queue, as docs/protocol.md lists them for a DLQ. */
export const CLASSIC_ARGUMENTS = { "x-queue-type": "classic", "x-queue-version": 2 } as const;

/**
 * Inboxes are classic version 1: on RabbitMQ 3.10 a version 2 queue holding a message keeps
 * files open outside the broker's file-handle limit, and ~500 away agents exhaust 1,024.
 */
export const INBOX_CLASSIC_VERSION = 1;

/** The inbox's arguments, exactly as docs/protocol.md lists them: dead letters to `ns.inboxes.dlq`. */
export function inboxArguments(names: Names): Record<string, unknown> {
  return classicInbox(names, INBOX_CLASSIC_VERSION, names.inboxDlq);
}

/**
 * Every shape an earlier release may have created the inbox in, in the order
 * broker/declare.py tries them (a queue's arguments cannot change on redeclare): with its
 * own DLQ (`ns.inbox.<id>.dlq`, key `ns.inbox.<id>`) as classic v2, v1 or quorum, then
 * with the shared DLQ as classic v2 or quorum.
 */
export function earlierInboxArguments(names: Names, agentId: string): Array<Record<string, unknown>> {
  const own = names.inboxQueue(agentId);
  return [
    classicInbox(names, 2, own),
    classicInbox(names, 1, own),
    quorumInbox(names, own),
    classicInbox(names, 2, names.inboxDlq),
    quorumInbox(names, names.inboxDlq),
  ];
}

function classicInbox(names: Names, version: number, deadLetterKey: string): Record<string, unknown> {
  return {
    "x-queue-type": "classic",
    "x-queue-version": version,
    "x-dead-letter-exchange": names.dlx,
    "x-dead-letter-routing-key": deadLetterKey,
    "x-overflow": "reject-publish",
    "x-expires": INBOX_EXPIRES_MS,
  };
}

function quorumInbox(names: Names, deadLetterKey: string): Record<string, unknown> {
  return {
    "x-queue-type": "quorum",
    "x-delivery-limit": INBOX_DELIVERY_LIMIT,
    "x-dead-letter-exchange": names.dlx,
    "x-dead-letter-routing-key": deadLetterKey,
    "x-dead-letter-strategy": "at-least-once",
    "x-overflow": "reject-publish",
    "x-expires": INBOX_EXPIRES_MS,
  };
}
