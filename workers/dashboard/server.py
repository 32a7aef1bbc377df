"""The dashboard's HTTP side: one page, its two static files and a read-only JSON API.

Routes (GET and HEAD only; anything else is 405)::

    /                          the page
    /static/app.js, style.css  its script and styles (served from the package, no CDN)
    /api/overview              everything the page shows, one JSON object
    /api/agents                the agents part of it
    /api/tasks?state=S&limit=N&cursor=C
                               a page of tasks, newest submitted first (``next_cursor``
                               goes on), from the tasks read model
    /api/tasks/<task id>       a task's row and timeline (as `rally task show --json`)
    /api/deadletters/<id>      one dead letter, whole (as `rally dlq show --json`)

Everything it shows comes from agents and payloads, so the page builds its DOM
with text nodes only; the Content-Security-Policy below forbids inline script
as a second line. Bound to a loopback address, it also refuses requests whose
Host is not a loopback name, so a web page the operator visits cannot read it
through DNS rebinding.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from functools import partial
from importlib import resources
from ipaddress import ip_address
from typing import Any
from uuid import UUID

from aiohttp import web

from contracts import ContractError
from workers.dashboard.data import TASK_STATES, agents_json
from workers.dashboard.service import Dashboard
from workers.dlq.archive import AmbiguousId, ArchiveError, NotFound
from workers.readmodels.task_queries import BadCursor
from workers.store import StoreError

DASHBOARD_KEY = web.AppKey("dashboard", Dashboard)
STATIC = {
    "app.js": "text/javascript",
    "style.css": "text/css",
}
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})
LETTER_ID = re.compile(r"^[0-9a-f]{1,64}$")
MAX_TASKS = 500
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _static(name: str) -> bytes:
    return resources.files("workers.dashboard").joinpath("static", name).read_bytes()


def build_app(dashboard: Dashboard, *, loopback_only: bool = True) -> web.Application:
    """The aiohttp application; ``loopback_only`` checks the Host header (see the module doc)."""
    app = web.Application(middlewares=[_guard(loopback_only)])
    app[DASHBOARD_KEY] = dashboard
    page = _static("index.html")
    files = {name: (_static(name), kind) for name, kind in STATIC.items()}

    async def index(_: web.Request) -> web.Response:
        return web.Response(body=page, content_type="text/html", charset="utf-8")

    async def static(request: web.Request) -> web.Response:
        found = files.get(request.match_info["name"])
        if found is None:
            raise web.HTTPNotFound(text="no such file")
        body, kind = found
        return web.Response(body=body, content_type=kind, charset="utf-8")

    app.router.add_get("/", index)
    app.router.add_get("/favicon.ico", _no_icon)
    app.router.add_get("/static/{name}", static)
    app.router.add_get("/api/overview", _overview)
    app.router.add_get("/api/agents", _agents)
    app.router.add_get("/api/tasks", _tasks)
    app.router.add_get("/api/tasks/{task_id}", _task)
    app.router.add_get("/api/deadletters/{letter_id}", _dead_letter)
    return app


def _guard(loopback_only: bool) -> Any:
    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        if loopback_only and not is_loopback((request.url.host or "").lower()):
            raise web.HTTPMisdirectedRequest(
                text="this dashboard answers only to localhost / 127.0.0.1"
            )
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            exc.headers.update(SECURITY_HEADERS)
            raise
        response.headers.update(SECURITY_HEADERS)
        if request.path.startswith("/api/"):
            response.headers["Cache-Control"] = "no-store"
        return response

    return guard


async def _no_icon(_: web.Request) -> web.Response:
    return web.Response(status=204)  # browsers ask; an empty answer keeps their consoles clean


def _json(value: Any, status: int = 200) -> web.Response:
    return web.json_response(value, status=status, dumps=partial(json.dumps, default=str))


def _error(status: int, message: str) -> web.Response:
    return _json({"error": message}, status)


async def _overview(request: web.Request) -> web.Response:
    return _json(request.app[DASHBOARD_KEY].overview())


async def _agents(request: web.Request) -> web.Response:
    dashboard = request.app[DASHBOARD_KEY]
    return _json(agents_json(dashboard.view, dashboard.beats, dashboard.clock.now()))


async def _tasks(request: web.Request) -> web.Response:
    state = request.query.get("state") or None
    if state is not None and state not in TASK_STATES:
        return _error(400, f"state must be one of {', '.join(TASK_STATES)}")
    try:
        limit = int(request.query.get("limit", "50"))
    except ValueError:
        return _error(400, "limit must be a whole number")
    limit = max(1, min(limit, MAX_TASKS))
    cursor = request.query.get("cursor") or None
    try:
        return _json(await request.app[DASHBOARD_KEY].tasks(state, limit, cursor))
    except BadCursor as exc:
        return _error(400, str(exc))
    except StoreError as exc:
        return _error(503, str(exc))


async def _task(request: web.Request) -> web.Response:
    text = request.match_info["task_id"]
    try:
        task_id = UUID(text)
    except ValueError:
        return _error(400, "not a task id (a UUID)")
    try:
        found = await request.app[DASHBOARD_KEY].task(task_id)
    except StoreError as exc:
        return _error(503, str(exc))
    except (ContractError, TypeError) as exc:  # an event this code cannot read
        return _error(500, f"cannot read the history of task {task_id}: {exc}")
    if found is None:
        return _error(404, f"no task {task_id} in the history")
    return _json(found)


async def _dead_letter(request: web.Request) -> web.Response:
    letter_id = request.match_info["letter_id"].lower()
    if not LETTER_ID.match(letter_id):
        return _error(400, "not a dead-letter id (hex digits, as `rally dlq list` shows)")
    try:
        return _json(await request.app[DASHBOARD_KEY].dead_letter(letter_id))
    except AmbiguousId as exc:
        return _error(400, str(exc))
    except NotFound as exc:
        return _error(404, str(exc))
    except ArchiveError as exc:
        return _error(503, str(exc))


async def serve(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, str]:
    """Start serving; returns the runner (to clean up) and the URL, with the real port."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError:
        await runner.cleanup()
        raise
    bound = runner.addresses[0][1] if runner.addresses else port
    shown = f"[{host}]" if ":" in host else host
    return runner, f"http://{shown}:{bound}/"
