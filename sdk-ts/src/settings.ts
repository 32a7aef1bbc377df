/** Where the broker is and which namespace: the same environment variables the Python side reads. */
import { parseNodes } from "./nodes";

export const DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/";

export interface Settings {
  /** RALLY_AMQP_URL: one node, or a cluster as `amqp://u:p@h1:5672,h2:5672/vhost` or comma-separated URLs. */
  url: string;
  /** RALLY_NAMESPACE: prefix of every exchange and queue. */
  namespace: string;
}

/** Settings from the environment and the overrides; a URL that names no usable node throws BrokerConfigError. */
export function settingsFromEnv(overrides: Partial<Settings> = {}): Settings {
  const url = overrides.url ?? process.env.RALLY_AMQP_URL ?? DEFAULT_AMQP_URL;
  parseNodes(url); // at start, with the reason: never a connection to half a node list
  return { url, namespace: overrides.namespace ?? process.env.RALLY_NAMESPACE ?? "rally" };
}

/** One full URL per node, in the order written (broker/nodes.py's two spellings). */
export function nodeUrls(url: string): string[] {
  return parseNodes(url).urls();
}

/** The broker user the URL logs in as (RabbitMQ's default is guest). */
export function brokerUser(url: string): string {
  const first = nodeUrls(url)[0] ?? DEFAULT_AMQP_URL;
  try {
    return decodeURIComponent(new URL(first).username) || "guest";
  } catch {
    return "guest";
  }
}

/** RALLY_SERVICE_USERS (default guest): who may publish the notices an agent or client trusts. */
export function serviceUsers(): Set<string> {
  const raw = process.env.RALLY_SERVICE_USERS ?? "guest";
  return new Set(raw.split(",").map((u) => u.trim()).filter((u) => u.length > 0));
}
