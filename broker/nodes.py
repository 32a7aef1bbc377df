"""RALLY_AMQP_URL as a list of broker nodes: one URL, or a cluster in one of two spellings.

    amqp://user:pass@h1:5672,h2:5673,h3:5674/vhost?heartbeat=5   the nodes in the host part
    amqp://user:pass@h1:5672/vhost,amqp://user:pass@h2:5673/vhost  full URLs, comma-separated

A cluster shares its users and virtual hosts, so every node of a list carries the
same credentials, vhost and options; in the second spelling they must be written
identically. Anything else is a :class:`BrokerConfigError` that says what is wrong,
never a connection to the first host with the rest of the string as its vhost.
The canonical form (``NodeList.compact``) is the first spelling, which
``urlsplit`` still reads for the user and the vhost.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from broker.errors import BrokerError

SCHEMES = ("amqp", "amqps")
# host, or [IPv6], then an optional :port
_HOST = re.compile(r"^(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.%~-]+)(?::(?P<port>[^:]*))?$")


class BrokerConfigError(BrokerError, ValueError):
    """RALLY_AMQP_URL (or another broker setting) cannot be used; the message says why."""


@dataclass(frozen=True)
class NodeList:
    scheme: str
    userinfo: str  # "user:pass" as written (percent-encoded), or ""
    hosts: tuple[str, ...]  # "h1:5672", "[::1]:5672", "h2"
    path: str  # "/vhost" as written ("" and "/" are the default vhost)
    query: str  # "heartbeat=5" without the "?"

    def _tail(self) -> str:
        return (self.path or "/") + (f"?{self.query}" if self.query else "")

    def _head(self) -> str:
        return f"{self.scheme}://" + (f"{self.userinfo}@" if self.userinfo else "")

    def urls(self) -> tuple[str, ...]:
        """One full URL per node, in the order written."""
        return tuple(self._head() + host + self._tail() for host in self.hosts)

    def compact(self) -> str:
        return self._head() + ",".join(self.hosts) + self._tail()


def _fail(problem: str) -> BrokerConfigError:
    return BrokerConfigError(
        f"RALLY_AMQP_URL: {problem}. Write one URL (amqp://user:pass@host:5672/vhost) or a "
        "cluster as amqp://user:pass@h1:5672,h2:5672,h3:5672/vhost or as full URLs "
        "separated by commas"
    )


def _split_url(item: str) -> tuple[str, str, str, str, str]:
    """scheme, userinfo, host part, path, query of one ``scheme://...`` item."""
    scheme, sep, rest = item.partition("://")
    if not sep:
        raise _fail(f"{item!r} is not a URL (no scheme://)")
    if scheme.lower() not in SCHEMES:
        raise _fail(f"scheme {scheme!r} is not one of {', '.join(SCHEMES)}")
    rest, _, query = rest.partition("?")
    if "#" in query:
        raise _fail("a URL fragment (#...) has no meaning here")
    netloc, slash, path = rest.partition("/")
    userinfo, at, hostpart = netloc.rpartition("@")
    return scheme.lower(), userinfo if at else "", hostpart, slash + path, query


def _check_host(host: str) -> str:
    match = _HOST.match(host)
    if match is None:
        why = "is empty" if not host else "is not host or host:port"
        raise _fail(f"node {host!r} {why}")
    port = match.group("port")
    if port is not None and not (port.isdigit() and 0 < int(port) < 65536):
        raise _fail(f"node {host!r} has port {port!r}, not a number from 1 to 65535")
    return host


def parse_nodes(text: str) -> NodeList:
    """The nodes RALLY_AMQP_URL names; raises :class:`BrokerConfigError` with the reason."""
    items = [part.strip() for part in text.strip().split(",")]
    if not items[0]:
        raise _fail("empty" if len(items) == 1 else "starts with a comma")
    if any(not part for part in items):
        raise _fail("an empty node between commas")
    full = ["://" in part for part in items]
    if all(full):
        return _from_full_urls(items)
    if not full[0]:
        raise _fail(f"{items[0]!r} is not a URL (no scheme://)")
    if any(full[1:]):
        raise _fail("mixes full URLs and bare host:port nodes; use one spelling")
    return _from_host_list(items)


def _from_host_list(items: list[str]) -> NodeList:
    scheme, userinfo, first, path, query = _split_url(items[0])
    if len(items) > 1 and (path or query):
        raise _fail(f"the vhost and options go after the last node, not after {first!r}")
    hosts = [first, *items[1:]]
    last, slash, tail = hosts[-1].partition("/")
    if slash:
        hosts[-1] = last
        path_q, _, query = tail.partition("?")
        path = "/" + path_q
    elif "?" in hosts[-1]:
        hosts[-1], _, query = hosts[-1].partition("?")
    for host in hosts:
        if "@" in host:
            # not echoed: it holds a password
            raise _fail("credentials after the first node: write them once, before it")
    return _nodes(NodeList(scheme, userinfo, tuple(hosts), path, query))


def _from_full_urls(items: list[str]) -> NodeList:
    parts = [_split_url(item) for item in items]
    scheme, userinfo, _, path, query = parts[0]
    for other in parts[1:]:
        if other[0] != scheme:
            raise _fail("nodes with different schemes (amqp and amqps)")
        if other[1] != userinfo:
            raise _fail("nodes with different credentials; a cluster shares its users")
        if (other[3] or "/") != (path or "/"):
            raise _fail(f"nodes with different vhosts ({path or '/'!r} and {other[3] or '/'!r})")
        if other[4] != query:
            raise _fail(f"nodes with different options ({query!r} and {other[4]!r})")
    return _nodes(NodeList(scheme, userinfo, tuple(p[2] for p in parts), path, query))


def _nodes(nodes: NodeList) -> NodeList:
    seen: set[str] = set()
    for host in nodes.hosts:
        _check_host(host)
        if host.lower() in seen:
            raise _fail(f"node {host!r} is listed twice")
        seen.add(host.lower())
    return nodes


def canonical_url(text: str) -> str:
    """One node: the URL as written. Several: the compact spelling."""
    nodes = parse_nodes(text)
    return text.strip() if len(nodes.hosts) == 1 else nodes.compact()
