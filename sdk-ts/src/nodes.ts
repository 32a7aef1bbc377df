/**
 * RALLY_AMQP_URL as a list of broker nodes: one URL, or a cluster in one of two spellings,
 * exactly as the Python side reads it (broker/nodes.py, whose messages these are):
 *
 *     amqp://user:pass@h1:5672,h2:5673,h3:5674/vhost?heartbeat=5   the nodes in the host part
 *     amqp://user:pass@h1:5672/vhost,amqp://user:pass@h2:5673/vhost  full URLs, comma-separated
 *
 * A cluster shares its users and virtual hosts, so every node carries the same credentials,
 * vhost and options; in the second spelling they must be written identically. Anything else
 * is a BrokerConfigError that says what is wrong, never a connection to the first host with
 * the rest of the string as its vhost.
 */

export const SCHEMES = ["amqp", "amqps"] as const;
// host, or [IPv6], then an optional :port
const HOST = /^(?<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.%~-]+)(?::(?<port>[^:]*))?$/;

/** RALLY_AMQP_URL (or the `url` setting) cannot be used; the message says why. */
export class BrokerConfigError extends Error {
  override name = "BrokerConfigError";
}

export class NodeList {
  constructor(
    readonly scheme: string,
    /** "user:pass" as written (percent-encoded), or "" */
    readonly userinfo: string,
    /** "h1:5672", "[::1]:5672", "h2" */
    readonly hosts: readonly string[],
    /** "/vhost" as written ("" and "/" are the default vhost) */
    readonly path: string,
    /** "heartbeat=5" without the "?" */
    readonly query: string,
  ) {}

  private head(): string {
    return `${this.scheme}://` + (this.userinfo ? `${this.userinfo}@` : "");
  }

  private tail(): string {
    return (this.path || "/") + (this.query ? `?${this.query}` : "");
  }

  /** One full URL per node, in the order written. */
  urls(): string[] {
    return this.hosts.map((host) => this.head() + host + this.tail());
  }

  compact(): string {
    return this.head() + this.hosts.join(",") + this.tail();
  }
}

/** Python's repr of a string, so the messages read as the Python side's do. */
function repr(text: string): string {
  const quote = text.includes("'") && !text.includes('"') ? '"' : "'";
  const escaped = text.replace(/\\/g, "\\\\");
  return quote + (quote === "'" ? escaped.replace(/'/g, "\\'") : escaped) + quote;
}

function fail(problem: string): BrokerConfigError {
  return new BrokerConfigError(
    `RALLY_AMQP_URL: ${problem}. Write one URL (amqp://user:pass@host:5672/vhost) or a ` +
      "cluster as amqp://user:pass@h1:5672,h2:5672,h3:5672/vhost or as full URLs " +
      "separated by commas",
  );
}

/** `before`, `sep`, `after` at the first `sep` (Python's str.partition). */
function partition(text: string, sep: string): [string, string, string] {
  const at = text.indexOf(sep);
  return at < 0 ? [text, "", ""] : [text.slice(0, at), sep, text.slice(at + sep.length)];
}

/** The same at the last `sep` (str.rpartition). */
function rpartition(text: string, sep: string): [string, string, string] {
  const at = text.lastIndexOf(sep);
  return at < 0 ? ["", "", text] : [text.slice(0, at), sep, text.slice(at + sep.length)];
}

type UrlParts = [scheme: string, userinfo: string, hostpart: string, path: string, query: string];

function splitUrl(item: string): UrlParts {
  const [scheme, sep, afterScheme] = partition(item, "://");
  if (!sep) throw fail(`${repr(item)} is not a URL (no scheme://)`);
  if (!(SCHEMES as readonly string[]).includes(scheme.toLowerCase())) {
    throw fail(`scheme ${repr(scheme)} is not one of ${SCHEMES.join(", ")}`);
  }
  const [rest, , query] = partition(afterScheme, "?");
  if (query.includes("#")) throw fail("a URL fragment (#...) has no meaning here");
  const [netloc, slash, path] = partition(rest, "/");
  const [userinfo, at, hostpart] = rpartition(netloc, "@");
  return [scheme.toLowerCase(), at ? userinfo : "", hostpart, slash + path, query];
}

function checkHost(host: string): string {
  const match = HOST.exec(host);
  if (match === null) {
    const why = host ? "is not host or host:port" : "is empty";
    throw fail(`node ${repr(host)} ${why}`);
  }
  const port = match.groups?.port;
  if (port !== undefined && !(/^[0-9]+$/.test(port) && Number(port) > 0 && Number(port) < 65536)) {
    throw fail(`node ${repr(host)} has port ${repr(port)}, not a number from 1 to 65535`);
  }
  return host;
}

/** The nodes RALLY_AMQP_URL names; throws BrokerConfigError with the reason. */
export function parseNodes(text: string): NodeList {
  const items = text.trim().split(",").map((part) => part.trim());
  if (!items[0]) throw fail(items.length === 1 ? "empty" : "starts with a comma");
  if (items.some((part) => !part)) throw fail("an empty node between commas");
  const full = items.map((part) => part.includes("://"));
  if (full.every(Boolean)) return fromFullUrls(items);
  if (!full[0]) throw fail(`${repr(items[0])} is not a URL (no scheme://)`);
  if (full.slice(1).some(Boolean)) throw fail("mixes full URLs and bare host:port nodes; use one spelling");
  return fromHostList(items);
}

function fromHostList(items: string[]): NodeList {
  const [scheme, userinfo, first, firstPath, firstQuery] = splitUrl(items[0]!);
  let path = firstPath;
  let query = firstQuery;
  if (items.length > 1 && (path || query)) {
    throw fail(`the vhost and options go after the last node, not after ${repr(first)}`);
  }
  const hosts = [first, ...items.slice(1)];
  const lastIndex = hosts.length - 1;
  const [last, slash, tail] = partition(hosts[lastIndex]!, "/");
  if (slash) {
    hosts[lastIndex] = last;
    const [pathQ, , q] = partition(tail, "?");
    path = "/" + pathQ;
    query = q;
  } else if (hosts[lastIndex]!.includes("?")) {
    const [host, , q] = partition(hosts[lastIndex]!, "?");
    hosts[lastIndex] = host;
    query = q;
  }
  for (const host of hosts) {
    // not echoed: it holds a password
    if (host.includes("@")) throw fail("credentials after the first node: write them once, before it");
  }
  return checked(new NodeList(scheme, userinfo, hosts, path, query));
}

function fromFullUrls(items: string[]): NodeList {
  const parts = items.map(splitUrl);
  const [scheme, userinfo, , path, query] = parts[0]!;
  for (const other of parts.slice(1)) {
    if (other[0] !== scheme) throw fail("nodes with different schemes (amqp and amqps)");
    if (other[1] !== userinfo) throw fail("nodes with different credentials; a cluster shares its users");
    if ((other[3] || "/") !== (path || "/")) {
      throw fail(`nodes with different vhosts (${repr(path || "/")} and ${repr(other[3] || "/")})`);
    }
    if (other[4] !== query) throw fail(`nodes with different options (${repr(query)} and ${repr(other[4])})`);
  }
  return checked(new NodeList(scheme, userinfo, parts.map((p) => p[2]), path, query));
}

function checked(nodes: NodeList): NodeList {
  const seen = new Set<string>();
  for (const host of nodes.hosts) {
    checkHost(host);
    if (seen.has(host.toLowerCase())) throw fail(`node ${repr(host)} is listed twice`);
    seen.add(host.toLowerCase());
  }
  return nodes;
}

/** The URL with its password hidden, for messages a user reads. */
export function redact(url: string): string {
  if (!url.includes("@") || !url.includes("://")) return url;
  const [scheme, , rest] = partition(url, "://");
  const [creds, , host] = rpartition(rest, "@");
  const user = partition(creds, ":")[0];
  return `${scheme}://${user}:***@${host}`;
}
