"""An ASGI middleware around Dagster's webserver app that says, once and plainly, which service is away.

- The database does not answer: the UI's pages and GraphQL get a 503 naming it (host:port, database),
  instead of Dagster's bare "Internal Server Error". The page reloads itself until the database is back.
- The daemon has not reported for a while: the UI's page gets a banner saying queued runs will not
  start; the banner asks `SERVICES_PATH` every few seconds and goes once the daemon reports again.
- Otherwise every request and response passes through untouched (websockets, static files included).

GraphQL's 503 keeps the shape of Dagster's own errors (a message, and `extensions.errorInfo` naming the
driver's exception) so that GraphQL clients, `geo-assets launch` among them, read it as they read Dagster's.
"""

from __future__ import annotations

import html
import json
import logging
import re

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from geo_assets.webserver.health import DatabaseDown, Services

LOGGER = logging.getLogger("dagster-webserver")
SERVICES_PATH = (
    "/geo-assets/services"  # under the path prefix: {"database": ..., "daemon": ...}, each a message or null
)
BANNER_ID = "geo-assets-service-banner"
RELOAD_S = 10  # the database page reloads itself this often
POLL_S = 5  # the banner asks SERVICES_PATH this often

DATABASE_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="{reload}">
<title>Dagster: database unreachable</title>
<style>body{{font-family:sans-serif;margin:15vh auto;max-width:46em;padding:0 1em;color:#222}}
h1{{font-size:1.4em}}p{{line-height:1.5}}</style></head>
<body><h1>{message}</h1>
<p>Runs, their history and the queue are kept in the database; nothing is lost while it is away.
This page reloads every {reload} s until the database answers again.</p></body></html>
"""

# Position fixed at the bottom: it covers no navigation of Dagster's and changes none of its code.
BANNER = """<div id="{id}" role="alert" style="position:fixed;left:0;right:0;bottom:0;z-index:2147483647;
padding:10px 16px;background:#b3261e;color:#fff;font:14px/1.4 sans-serif;text-align:center">{message}</div>
<script nonce="{nonce}">(function(){{var b=document.getElementById("{id}");var t=setInterval(function(){{
fetch("{url}",{{cache:"no-store"}}).then(function(r){{return r.json()}}).then(function(s){{var m=s.database||s.daemon;
if(m){{b.textContent=m;b.style.display=""}}else{{b.remove();clearInterval(t)}}}}).catch(function(){{}})}},{poll});}})();</script>
"""


class ServiceMessages:
    def __init__(self, app: ASGIApp, services: Services, path_prefix: str = ""):
        self.app, self.services, self.prefix = app, services, path_prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.prefix):
            await self.app(scope, receive, send)  # websockets (GraphQL subscriptions), lifespan
            return
        path = scope["path"][len(self.prefix) :]
        wants_html = "text/html" in Headers(scope=scope).get("accept", "")
        if path == SERVICES_PATH:
            await self._services(send)
            return
        page = scope["method"] in ("GET", "HEAD") and wants_html
        if path != "/graphql" and not page:
            await self.app(scope, receive, send)  # scripts, styles, images, downloads, the API's other routes
            return
        down = await self.services.database()
        if down:
            await self.database_down(down, wants_html, send)
            return
        watch = _Watch(self, send, wants_html, page=page, retry=scope["method"] == "GET" and page)
        try:
            await self.app(scope, receive, watch)
        except Exception:  # Starlette sends its 500, then raises: logged here when that 500 was replaced
            if watch.mode not in ("drop", "retry"):
                raise
            LOGGER.warning("Dagster's webserver failed on %s %s", scope["method"], scope["path"], exc_info=True)
        if watch.mode == "retry":  # the page failed on a connection the database dropped: asked once more
            await self.app(scope, _no_body, _Watch(self, send, wants_html, page=page, retry=False))

    async def _services(self, send: Send) -> None:
        down = await self.services.database()
        body = {"database": down.message if down else None, "daemon": None if down else await self.services.daemon()}
        await _respond(send, 200, "application/json", json.dumps(body).encode())

    async def database_down(self, down: DatabaseDown, wants_html: bool, send: Send) -> None:
        if wants_html:
            page = DATABASE_PAGE.format(message=html.escape(down.message), reload=RELOAD_S)
            await _respond(send, 503, "text/html; charset=utf-8", page.encode(), {"retry-after": str(RELOAD_S)})
            return
        error = {
            "message": down.message,
            "extensions": {
                "errorInfo": {"message": f"{down.error}: {down.cause}", "cls_name": down.error.rsplit(".", 1)[-1]}
            },
        }
        body = json.dumps({"data": None, "errors": [error]}).encode()
        await _respond(send, 503, "application/json", body, {"retry-after": str(RELOAD_S)})

    def banner(self, message: str, nonce: str) -> bytes:
        return BANNER.format(
            id=BANNER_ID,
            message=html.escape(message),
            nonce=html.escape(nonce),
            url=self.prefix + SERVICES_PATH,
            poll=POLL_S * 1000,
        ).encode()


class _Watch:
    """The `send` of one UI page or GraphQL request passed to Dagster. A 500 makes the database be asked
    again at once (the cached answer may predate its going away): when it is down, the 503 goes instead.
    When it answers, a page's 500 may be a pooled connection of Dagster's that the database dropped while
    away (each fails once, then reconnects): with `retry`, the page is asked once more instead of shown.
    A page's HTML gets the daemon's banner when the daemon is silent."""

    def __init__(self, outer: ServiceMessages, send: Send, wants_html: bool, page: bool, retry: bool):
        self.outer, self.send, self.wants_html, self.page, self.retry = outer, send, wants_html, page, retry
        self.start: Message | None = None
        self.body: list[bytes] = []
        # pass | page (HTML held to edit) | drop (Dagster's 500, replaced by the 503) | retry (500 dropped)
        self.mode = "pass"

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = Headers(raw=message["headers"])
            if message["status"] >= 500:
                down = await self.outer.services.database(max_age=0)
                if down:
                    self.mode = "drop"
                    await self.outer.database_down(down, self.wants_html, self.send)
                    return
                if self.retry:
                    self.mode = "retry"
                    return
            elif (
                self.page
                and headers.get("content-type", "").startswith("text/html")
                and "content-encoding" not in headers
            ):
                self.start, self.mode = message, "page"
                return
            await self.send(message)
            return
        if self.mode in ("drop", "retry"):
            return
        if self.mode != "page":
            await self.send(message)
            return
        self.body.append(message.get("body", b""))
        if message.get("more_body"):
            return
        await self._send_page(b"".join(self.body))

    async def _send_page(self, body: bytes) -> None:
        start = self.start
        assert start is not None  # the page mode began with the response's start
        silent = await self.outer.services.daemon()
        at = body.rfind(b"</body>")
        if silent and at >= 0:
            csp = Headers(raw=start["headers"]).get("content-security-policy", "")
            nonce = re.search(r"'nonce-([^']+)'", csp)
            body = body[:at] + self.outer.banner(silent, nonce.group(1) if nonce else "") + body[at:]
            headers = MutableHeaders(raw=list(start["headers"]))
            headers["content-length"] = str(len(body))
            start = {**start, "headers": headers.raw}
        await self.send(start)
        await self.send({"type": "http.response.body", "body": body, "more_body": False})


async def _no_body() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _respond(send: Send, status: int, content_type: str, body: bytes, extra: dict | None = None) -> None:
    headers = {
        "content-type": content_type,
        "content-length": str(len(body)),
        "cache-control": "no-store",
        **(extra or {}),
    }
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(k.encode(), v.encode()) for k, v in headers.items()],
        }
    )
    await send({"type": "http.response.body", "body": body})
