"""A fault-injecting HTTP proxy on 127.0.0.1, in front of a real server (the S3 server of the tests).

Requests pass through unchanged, except those chosen to fail, which get one of:

- `"503"`: a 503 answer, as a throttled bucket gives: S3's `SlowDown`, or with `api="gcs"` the JSON error
  of the GCS API;
- `"reset"`: the connection reset (TCP RST) once the request's head has arrived;
- `"stall"`: no answer at all, until the client gives up and closes the connection;
- `"cut"`: the request's head and the first half of its body passed to the server, then both connections
  reset: an upload interrupted mid-way, which the server sees arrive in part.

`proxy.inject(fault, times=N)` fails the next N requests, `fraction=p` a seeded share of them (N of
those where both are given), and with no `times` every one picked until `proxy.heal()`; `methods` and
`paths` (substrings of the request's path) narrow the requests it picks. Several injections apply
together, the first that takes a request failing it. Each client connection carries one request (the proxy
asks the server to close after answering), so every request is seen and counted.

    with FaultProxy("127.0.0.1", 8333) as proxy:
        proxy.inject("503", times=3)
        ... point the client at proxy.url ...
        proxy.injected  # {"503": 3}
"""

from __future__ import annotations

import random
import socket
import struct
import threading
import time
from collections import Counter
from dataclasses import dataclass

FAULTS = ("503", "reset", "stall", "cut")
_HEAD_END = b"\r\n\r\n"
_MAX_HEAD = 64 * 1024
_GCS_503 = b'{"error": {"code": 503, "message": "Service Unavailable: backend error"}}'
_SLOW_DOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>"
)


@dataclass
class _Plan:
    fault: str
    times: int | None  # None: until healed
    fraction: float
    methods: tuple[str, ...]  # empty: every method
    paths: tuple[str, ...]  # substrings of the request path; empty: every path


class FaultProxy:
    def __init__(self, host: str, port: int, seed: int = 19, api: str = "s3") -> None:
        self.upstream = (host, port)
        self.busy = (b"application/json", _GCS_503) if api == "gcs" else (b"application/xml", _SLOW_DOWN)
        # The GCS server answers GDAL's XML-style paths only for its own host name, as a reverse proxy would
        # send it; an S3 request keeps its Host, which its signature covers.
        self.host = f"{host}:{port}".encode() if api == "gcs" else None
        self._lock = threading.Lock()
        self._random = random.Random(seed)
        self._plans: list[_Plan] = []
        self.requests = 0  # requests seen, faulted or not
        self.injected: Counter[str] = Counter()
        self.log: list[tuple[str, str, str]] = []  # (method, path, fault or "pass")
        self.cut_bytes = 0  # body bytes of cut uploads that reached the server
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._stopping = threading.Event()
        self._open: set[socket.socket] = set()
        self._thread = threading.Thread(target=self._accept, name="fault-proxy", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._listener.getsockname()[1]}"

    def inject(
        self,
        fault: str,
        *,
        times: int | None = None,
        fraction: float = 1.0,
        methods: tuple[str, ...] = (),
        paths: tuple[str, ...] = (),
    ) -> None:
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}: one of {', '.join(FAULTS)}")
        if not 0.0 < fraction <= 1.0:
            raise ValueError(f"fraction must be in (0, 1], got {fraction}")
        with self._lock:
            self._plans.append(_Plan(fault, times, fraction, tuple(m.upper() for m in methods), tuple(paths)))

    def heal(self) -> None:
        with self._lock:
            self._plans.clear()

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stopping.set()
        self._listener.close()
        with self._lock:
            for sock in list(self._open):
                _close(sock)
        self._thread.join(timeout=5)

    # -- serving

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _choose(self, method: str, path: str) -> str | None:
        with self._lock:
            self.requests += 1
            for plan in self._plans:
                if plan.methods and method not in plan.methods:
                    continue
                if plan.paths and not any(p in path for p in plan.paths):
                    continue
                if plan.fraction < 1.0 and self._random.random() >= plan.fraction:
                    continue
                if plan.times is not None:
                    plan.times -= 1
                    if plan.times == 0:
                        self._plans.remove(plan)
                self.injected[plan.fault] += 1
                return plan.fault
            return None

    def _serve(self, client: socket.socket) -> None:
        with self._lock:
            self._open.add(client)
        try:
            head, rest = _read_head(client)
            if head is None:
                return
            method, path = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ")[:2]
            fault = self._choose(method, path)
            with self._lock:
                self.log.append((method, path, fault or "pass"))
            if fault is None:
                self._forward(client, _one_request(head, self.host) + rest)
            elif fault == "503":
                client.sendall(
                    b"HTTP/1.1 503 Slow Down\r\nContent-Type: %s\r\n"
                    b"Content-Length: %d\r\nConnection: close\r\n\r\n%s"
                    % (self.busy[0], len(self.busy[1]), self.busy[1])
                )
                _drain(client, idle=1.0)
            elif fault == "reset":
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            elif fault == "stall":
                _drain(client, idle=None)  # until the client gives up
            elif fault == "cut":
                self._cut(client, head, rest)
        except OSError:
            pass
        finally:
            with self._lock:
                self._open.discard(client)
            _close(client)

    def _forward(self, client: socket.socket, first: bytes) -> None:
        upstream = socket.create_connection(self.upstream, timeout=30)
        with self._lock:
            self._open.add(upstream)
        try:
            upstream.sendall(first)
            pump = threading.Thread(target=_pipe, args=(client, upstream), daemon=True)
            pump.start()
            _pipe(upstream, client)  # the server closes after its answer (Connection: close)
        finally:
            with self._lock:
                self._open.discard(upstream)
            _close(upstream)

    def _cut(self, client: socket.socket, head: bytes, rest: bytes) -> None:
        """Pass the head and half the body on, then reset both connections: the server holds a part of the
        upload when its connection breaks, the client an error."""
        length = _content_length(head)
        half = length // 2 if length is not None else _MAX_HEAD
        client.settimeout(5.0)  # a client waiting for `100 Continue` sends no more
        try:
            while len(rest) < half and (chunk := client.recv(65536)):
                rest += chunk
        except OSError:
            pass
        upstream = socket.create_connection(self.upstream, timeout=30)
        try:
            upstream.sendall(_one_request(head, self.host) + rest[:half])
            time.sleep(0.2)  # the server has read the part before its connection breaks
        finally:
            for sock in (upstream, client):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            _close(upstream)
        with self._lock:
            self.cut_bytes += min(len(rest), half)


def _content_length(head: bytes) -> int | None:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value.strip())
    return None


def _read_head(sock: socket.socket) -> tuple[bytes | None, bytes]:
    data = b""
    while _HEAD_END not in data:
        chunk = sock.recv(65536)
        if not chunk or len(data) > _MAX_HEAD:
            return None, b""
        data += chunk
    head, rest = data.split(_HEAD_END, 1)
    return head, rest


def _one_request(head: bytes, host: bytes | None = None) -> bytes:
    """The request head with `Connection: close`: the server answers it and closes, so the next request
    comes on a new connection, through `_serve` again. (Not a signed header: signatures still hold.)
    `host`: the Host header to send instead of the client's."""
    dropped = (b"connection:", b"keep-alive:", *((b"host:",) if host else ()))
    lines = [line for line in head.split(b"\r\n") if not line.lower().startswith(dropped)]
    return b"\r\n".join(lines + [b"Connection: close", *((b"Host: " + host,) if host else ())]) + _HEAD_END


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    try:
        while chunk := src.recv(65536):
            dst.sendall(chunk)
    except OSError:
        pass
    finally:
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def _drain(sock: socket.socket, idle: float | None) -> None:
    """Read and drop what the client sends (a request body) until it closes, or is `idle` seconds silent."""
    sock.settimeout(idle)
    try:
        while sock.recv(65536):
            pass
    except OSError:
        pass


def _close(sock: socket.socket) -> None:
    try:
        sock.close()
    except OSError:
        pass
