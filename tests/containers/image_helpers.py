"""Shared by the image and Dask container tests: containers of the project's image on the host
network, removed on exit. A module of its own: `conftest` is not importable by name when several exist."""

from __future__ import annotations

import contextlib
import subprocess
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

from devtools import containers

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "geo-assets-image-test"  # every container and tag these tests create starts with it


def name(what: str) -> str:
    return f"{PREFIX}-{what}-{uuid.uuid4().hex[:8]}"


@contextlib.contextmanager
def container(
    image: str,
    *command: str,
    env: dict[str, str] | None = None,
    mounts: Sequence[str] = (),
    user: str | None = None,
    what: str = "run",
) -> Iterator[str]:
    """`docker run -d --network host` of `image`; yields the container's name; removed on exit."""
    cname = name(what)
    args = ["run", "-d", "--network", "host", "--name", cname]
    for key, value in (env or {}).items():
        args += ["-e", f"{key}={value}"]
    for mount in mounts:
        args += ["-v", mount]
    if user:
        args += ["--user", user]
    containers.docker(*args, image, *command, what=f"starting {cname}")
    try:
        yield cname
    finally:
        subprocess.run(["docker", "rm", "-f", cname], capture_output=True, timeout=120)


def logs(cname: str) -> str:
    proc = subprocess.run(["docker", "logs", cname], capture_output=True, text=True, timeout=60)
    return proc.stdout + proc.stderr


def running(cname: str) -> bool:
    proc = subprocess.run(["docker", "inspect", "-f", "{{.State.Running}}", cname], capture_output=True, text=True)
    return proc.stdout.strip() == "true"


def wait_until(check, timeout: float, what: str, cname: str | None = None) -> None:
    """Poll `check()` until true; else fail naming `what`, with the container's log tail."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if cname and not running(cname):
            break
        time.sleep(0.5)
    raise AssertionError(
        f"{what} within {timeout:.0f} s" + (f"; {cname} logs:\n{logs(cname)[-4000:]}" if cname else "")
    )
