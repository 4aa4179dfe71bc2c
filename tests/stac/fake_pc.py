"""A stand-in for Planetary Computer's SAS token endpoint (its control plane cannot run offline).

The blobs themselves are served by Azurite (`devtools.emulators.azure`); this small local HTTP
server only issues tokens for them, as PC does: `GET /api/sas/v1/token/{account}/{container}` ->
{"token", "msft:expiry"}, where the token is a genuine container SAS signed with the Azurite
account key and expiring `lifetime_s` from now, so that Azurite itself refuses unsigned and
expired reads. It counts the requests, and can answer the next ones with given error statuses.
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from devtools.emulators.azure import AzureBlobServer

TOKEN_PATH = re.compile(r"^/api/sas/v1/token/([^/]+)/([^/]+)$")


class FakePlanetaryComputer:
    def __init__(self, blobs: AzureBlobServer, lifetime_s: float = 3600.0):
        self.blobs = blobs  # the Azure Blob server whose containers the tokens open
        self.lifetime_s = lifetime_s
        self.token_calls: list[tuple[str, str]] = []  # (account, container) of every token request
        self.fail_next: list[int] = []  # statuses to answer the next token requests with
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def token_url(self) -> str:
        return self.url + "/api/sas/v1/token/{account}/{container}"

    def __enter__(self) -> FakePlanetaryComputer:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                fake._handle(self)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _send(self, req, status: int, payload: bytes, content_type: str = "application/json") -> None:
        req.send_response(status)
        req.send_header("Content-Length", str(len(payload)))
        req.send_header("Content-Type", content_type)
        req.end_headers()
        req.wfile.write(payload)

    def _handle(self, req: BaseHTTPRequestHandler) -> None:
        m = TOKEN_PATH.match(urlsplit(req.path).path)
        if not m:
            return self._send(req, 404, b'{"detail": "Not Found"}')
        account, container = m.groups()
        with self._lock:
            self.token_calls.append((account, container))
            status = self.fail_next.pop(0) if self.fail_next else 200
            lifetime = self.lifetime_s
        if status != 200:
            return self._send(req, status, b'{"detail": "fake failure"}')
        if account != self.blobs.account:
            return self._send(req, 404, json.dumps({"detail": f"unknown storage account {account}"}).encode())
        token, expiry = self.blobs.container_sas(container, lifetime)
        stamp = expiry.isoformat().replace("+00:00", "Z")
        self._send(req, 200, json.dumps({"msft:expiry": stamp, "token": token}).encode())
