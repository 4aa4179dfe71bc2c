"""A stand-in for Planetary Computer's SAS token endpoint and the blob container its tokens open.

The one fake in tests/stac (Azure's own emulator is not installable here): a local HTTP server
that issues tokens (`GET /api/sas/v1/token/{account}/{container}` -> {"token", "msft:expiry"}),
counts the requests, can answer the next ones with given error statuses, and serves blobs from a
folder (`GET`/`HEAD /{account}/{container}/{blob}?{token}`, with byte ranges, as GDAL's /vsicurl/
reads them) only to requests carrying an issued, unexpired token: 403 otherwise, as Azure does.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

TOKEN_PATH = re.compile(r"^/api/sas/v1/token/([^/]+)/([^/]+)$")


class FakePlanetaryComputer:
    def __init__(self, blob_root: Path, lifetime_s: float = 3600.0):
        self.blob_root = Path(blob_root)
        self.lifetime_s = lifetime_s
        self.token_calls: list[tuple[str, str]] = []  # (account, container) of every token request
        self.fail_next: list[int] = []  # statuses to answer the next token requests with
        self.refused: list[str] = []  # blob paths refused for want of a valid token
        self._tokens: dict[str, tuple[str, str, float]] = {}  # sig -> (account, container, expiry)
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def token_url(self) -> str:
        return self.url + "/api/sas/v1/token/{account}/{container}"

    def __enter__(self) -> "FakePlanetaryComputer":
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                fake._handle(self, body=True)

            def do_HEAD(self):
                fake._handle(self, body=False)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    # --- request handling ---------------------------------------------------------------

    def _handle(self, req: BaseHTTPRequestHandler, body: bool) -> None:
        parts = urlsplit(req.path)
        m = TOKEN_PATH.match(parts.path)
        if m:
            return self._token(req, *m.groups())
        return self._blob(req, unquote(parts.path), parse_qs(parts.query), body)

    def _send(self, req, status: int, payload: bytes = b"", headers: dict | None = None, body: bool = True) -> None:
        req.send_response(status)
        for k, v in {"Content-Length": str(len(payload)), **(headers or {})}.items():
            req.send_header(k, v)
        req.end_headers()
        if body and payload:
            req.wfile.write(payload)

    def _token(self, req, account: str, container: str) -> None:
        with self._lock:
            self.token_calls.append((account, container))
            status = self.fail_next.pop(0) if self.fail_next else 200
            if status != 200:
                return self._send(req, status, b'{"detail": "fake failure"}')
            sig = secrets.token_hex(8)
            expiry = time.time() + self.lifetime_s
            self._tokens[sig] = (account, container, expiry)
        stamp = datetime.fromtimestamp(expiry, timezone.utc).isoformat().replace("+00:00", "Z")
        token = f"st=2024-01-01T00%3A00%3A00Z&se={stamp}&sp=rl&sv=2021-06-08&sr=c&sig={sig}"
        self._send(req, 200, json.dumps({"msft:expiry": stamp, "token": token}).encode(), {"Content-Type": "application/json"})

    def _blob(self, req, path: str, query: dict, body: bool) -> None:
        segments = path.lstrip("/").split("/", 2)
        sig = (query.get("sig") or [""])[0]
        with self._lock:
            grant = self._tokens.get(sig)
        if len(segments) < 3 or grant is None or grant[:2] != tuple(segments[:2]) or grant[2] < time.time():
            self.refused.append(path)
            return self._send(req, 403, b"AuthenticationFailed", body=body)
        file = self.blob_root.joinpath(*segments)
        if not file.is_file():
            return self._send(req, 404, b"BlobNotFound", body=body)
        data = file.read_bytes()
        size = len(data)
        rng = re.match(r"bytes=(\d+)-(\d*)", req.headers.get("Range", ""))
        if rng:
            start = int(rng.group(1))
            end = min(int(rng.group(2)) if rng.group(2) else size - 1, size - 1)
            if start >= size:
                return self._send(req, 416, b"", {"Content-Range": f"bytes */{size}"}, body=body)
            return self._send(
                req, 206, data[start : end + 1], {"Content-Range": f"bytes {start}-{end}/{size}", "Accept-Ranges": "bytes"}, body
            )
        self._send(req, 200, data, {"Accept-Ranges": "bytes"}, body)
