/** Where the broker is and which namespace: the same environment variables the Python side reads. */
export const DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/";

export interface Settings {
  /** RALLY_AMQP_URL: one node, or a cluster as `amqp://u:p@h1:5672,h2:5672/vhost` or comma-separated URLs. */
  url: string;
  /** RALLY_NAMESPACE: prefix of every exchange and queue. */
  namespace: string;
}

export function settingsFromEnv(overrides: Partial<Settings> = {}): Settings {
  return {
    url: overrides.url ?? process.env.RALLY_AMQP_URL ?? DEFAULT_AMQP_URL,
    namespace: overrides.namespace ?? process.env.RALLY_NAMESPACE ?? "rally",
  };
}

/** The node URLs to try, in order. */
export function nodeUrls(url: string): string[] {
  const parts = url.split(",").map((p) => p.trim()).filter((p) => p.length > 0);
  if (parts.length <= 1 || parts.slice(1).every((p) => p.includes("://"))) return parts;
  // amqp://u:p@h1:5672,h2:5672/vhost: the credentials and vhost are shared
  const first = new URL(parts[0]!);
  const last = parts[parts.length - 1]!;
  const slash = last.indexOf("/");
  const vhostPath = slash >= 0 ? last.slice(slash) : first.pathname;
  const hosts = [first.host, ...parts.slice(1).map((p) => (p.indexOf("/") >= 0 ? p.slice(0, p.indexOf("/")) : p))];
  const auth = first.username ? `${first.username}:${first.password}@` : "";
  return hosts.map((host) => `${first.protocol}//${auth}${host}${vhostPath === "" ? "/" : vhostPath}`);
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
