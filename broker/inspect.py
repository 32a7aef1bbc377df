"""Queue depth and consumer count without the management plugin: a passive declare each.

Where the management plugin is enabled (``RALLY_MANAGEMENT_URL``, e.g.
``http://guest:guest@127.0.0.1:15672``), ``management_rates`` reads its
publish and ack rates per queue as well. The plugin takes a sample every
5 seconds, and its plain ``rate`` is the change between the last two samples,
which drops to zero while the newest is stale; so the rates are asked as
averages over a window of several samples (``msg_rates_age``) instead.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import aio_pika

from broker.connection import BrokerConnection, redact
from broker.errors import BrokerError

MANAGEMENT_URL_ENV = "RALLY_MANAGEMENT_URL"
MANAGEMENT_SAMPLE_S = 5  # the plugin's default statistics interval
MANAGEMENT_WINDOW_S = 30  # the shortest window its rates are averaged over


class ManagementUnavailable(BrokerError):
    """The management API did not answer as expected; the message names the URL."""


@dataclass(frozen=True, slots=True)
class QueueStats:
    name: str
    messages: int
    consumers: int
    exists: bool = True


@dataclass(frozen=True, slots=True)
class ManagementRates:
    """Messages per second into and out of one queue, as the management plugin averages them."""

    publish_rate: float
    ack_rate: float


async def queue_stats(conn: BrokerConnection, names: Sequence[str]) -> list[QueueStats]:
    out: list[QueueStats] = []
    channel = await conn.connection.channel(publisher_confirms=False)
    try:
        for name in names:
            stats: QueueStats | None = None
            # a failed passive declare closes the channel: carry on with a fresh one; a queue
            # that is there but did not answer (the channel closed for another reason) gets
            # one more try before it is reported missing, as it always was
            for last_try in (False, True):
                try:
                    queue = await channel.declare_queue(name, passive=True)
                except aio_pika.exceptions.ChannelClosed as exc:
                    channel = await conn.connection.channel(publisher_confirms=False)
                    if last_try or isinstance(exc, aio_pika.exceptions.ChannelNotFoundEntity):
                        break
                    continue
                result = queue.declaration_result
                messages, consumers = result.message_count, result.consumer_count
                stats = QueueStats(name, int(messages or 0), int(consumers or 0))
                break
            out.append(stats or QueueStats(name, 0, 0, exists=False))
    finally:
        if not channel.is_closed:
            await channel.close()
    return out


async def queue_depths(conn: BrokerConnection, names: Iterable[str]) -> dict[str, int]:
    """Messages ready in each of the named queues that exist; missing ones are left out."""
    stats = await queue_stats(conn, list(dict.fromkeys(names)))
    return {s.name: s.messages for s in stats if s.exists}


def vhost_of(amqp_url: str) -> str:
    """The virtual host an AMQP URL names (``amqp://h/`` and ``amqp://h`` are ``/``)."""
    path = urlsplit(amqp_url).path
    return unquote(path[1:]) if len(path) > 1 else "/"


def rates_from_management(queue: Mapping[str, Any]) -> ManagementRates:
    """The rates in one ``GET /api/queues/<vhost>/<name>`` answer.

    ``avg_rate`` (present when a window was asked for) is preferred to ``rate``.
    The plugin leaves out ``message_stats`` (or one of its ``*_details``) for a
    queue nothing has gone through yet: that is a rate of zero.
    """
    stats = queue.get("message_stats") or {}

    def rate(key: str) -> float:
        details = stats.get(f"{key}_details") or {}
        return float(details.get("avg_rate", details.get("rate", 0.0)))

    return ManagementRates(publish_rate=max(0.0, rate("publish")), ack_rate=max(0.0, rate("ack")))


def management_window(interval_s: float) -> int:
    """Seconds to average the plugin's rates over: whole samples, at least MANAGEMENT_WINDOW_S."""
    wanted = max(float(MANAGEMENT_WINDOW_S), interval_s)
    return MANAGEMENT_SAMPLE_S * math.ceil(wanted / MANAGEMENT_SAMPLE_S)


async def management_rates(
    management_url: str,
    vhost: str,
    names: Sequence[str],
    *,
    window_s: int = MANAGEMENT_WINDOW_S,
    timeout_s: float = 5.0,
) -> dict[str, ManagementRates]:
    """Publish and ack rates of each named queue that exists, averaged over ``window_s``.

    Raises ManagementUnavailable when the API does not answer as expected.
    """
    parts = urlsplit(management_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ManagementUnavailable(
            f"{MANAGEMENT_URL_ENV} must be http(s)://user:password@host:port, "
            f"got {redact(management_url)}"
        )
    user, password = unquote(parts.username or "guest"), unquote(parts.password or "guest")
    credentials = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    host = parts.netloc.rsplit("@", 1)[-1]
    base = urlunsplit((parts.scheme, host, parts.path.rstrip("/"), "", ""))
    # imported here: every agent imports this module, and an HTTP client is ~10 MiB it
    # would carry for a feature only `rally status` uses
    import aiohttp
    from yarl import URL

    out: dict[str, ManagementRates] = {}
    try:
        async with aiohttp.ClientSession(
            headers={"Authorization": f"Basic {credentials}"},
            timeout=aiohttp.ClientTimeout(total=timeout_s),
        ) as session:
            for name in names:
                # encoded=True: the vhost "/" must reach the API as %2F, not as a path separator
                url = URL(
                    f"{base}/api/queues/{quote(vhost, safe='')}/{quote(name, safe='')}"
                    f"?msg_rates_age={window_s}&msg_rates_incr={MANAGEMENT_SAMPLE_S}",
                    encoded=True,
                )
                async with session.get(url) as response:
                    if response.status == 404:
                        continue  # not declared (yet): nothing to rate
                    if response.status != 200:
                        raise ManagementUnavailable(
                            f"the management API at {redact(management_url)} answered "
                            f"{response.status} for queue {name!r}"
                        )
                    body = await response.json()
                    if not isinstance(body, Mapping):
                        raise ValueError(f"expected an object for queue {name!r}")
                    out[name] = rates_from_management(body)
    except (aiohttp.ClientError, TimeoutError, ValueError, TypeError) as exc:
        raise ManagementUnavailable(
            f"cannot read the management API at {redact(management_url)} "
            f"({type(exc).__name__}: {exc})"
        ) from None
    return out


async def server_version(url: str) -> str | None:
    """The RabbitMQ version a broker URL's node announces (for reports); None if unknown."""
    connection = await aio_pika.connect(url)
    try:
        transport = connection.transport
        if transport is None:
            return None
        version = transport.connection.server_properties.get("version")
    finally:
        await connection.close()
    return version.decode() if isinstance(version, bytes) else str(version)
