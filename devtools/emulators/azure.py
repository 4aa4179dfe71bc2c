"""An Azure Blob API on 127.0.0.1: Azurite, Microsoft's storage emulator, with real SAS checks.

Azurite is a Node.js package: it is installed from the npm registry into a project-local,
git-ignored folder (`.cache/azurite`, or `$GEO_ASSETS_AZURITE_DIR`) the first time it is needed,
so a fresh machine needs only node and npm. It serves the well-known development account
`devstoreaccount1` path-style (`http://127.0.0.1:{port}/devstoreaccount1/{container}/{blob}`),
and, like Azure, refuses requests to private containers that carry no valid (unexpired) SAS.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from devtools.emulators import free_port, running, wait_for_http

AZURITE_VERSION = "3.35.0"  # the last release that runs on node 20 (3.36 wants node >= 21)
ACCOUNT = "devstoreaccount1"
# Azurite's published development key (docs: "Use the Azurite emulator", well-known storage account).
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
DEFAULT_DIR = Path(__file__).resolve().parents[2] / ".cache" / "azurite"


@dataclass(frozen=True)
class AzureBlobServer:
    host: str
    port: int
    account: str = ACCOUNT
    account_key: str = field(default=ACCOUNT_KEY, repr=False)

    @property
    def account_url(self) -> str:
        """Blob service URL of the account: blobs are `{account_url}/{container}/{blob}`."""
        return f"http://{self.host}:{self.port}/{self.account}"

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={self.account};AccountKey={self.account_key};"
            f"BlobEndpoint={self.account_url};"
        )

    def client(self):
        from azure.storage.blob import BlobServiceClient

        return BlobServiceClient.from_connection_string(self.connection_string)

    def container_sas(self, container: str, lifetime_s: float) -> tuple[str, datetime]:
        """A read/list SAS for `container` expiring `lifetime_s` from now (rounded up to the second,
        SAS times have no fractions), and its expiry."""
        from azure.storage.blob import ContainerSasPermissions, generate_container_sas

        now = datetime.now(UTC)
        expiry = (now + timedelta(seconds=lifetime_s)).replace(microsecond=0) + timedelta(seconds=1)
        token = generate_container_sas(
            self.account,
            container,
            account_key=self.account_key,
            permission=ContainerSasPermissions(read=True, list=True),
            start=now.replace(microsecond=0) - timedelta(minutes=5),
            expiry=expiry,
        )
        return token, expiry


def azurite_blob_binary(install_dir: Path | None = None) -> str:
    """`azurite-blob` from `install_dir`, installed there with npm first if it is missing or another version."""
    install_dir = Path(install_dir or os.environ.get("GEO_ASSETS_AZURITE_DIR") or DEFAULT_DIR)
    binary = install_dir / "node_modules" / ".bin" / "azurite-blob"
    manifest = install_dir / "node_modules" / "azurite" / "package.json"

    def installed() -> bool:
        import json

        try:
            return binary.exists() and json.loads(manifest.read_text())["version"] == AZURITE_VERSION
        except (OSError, ValueError, KeyError):
            return False

    if installed():
        return str(binary)
    npm = shutil.which("npm")
    if not npm:
        raise FileNotFoundError(
            "npm was not found: Azurite (the Azure Blob emulator) is installed with npm; install node >= 20"
        )
    install_dir.mkdir(parents=True, exist_ok=True)
    with open(install_dir / ".install.lock", "w") as lock:  # parallel test processes install once
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not installed():
            cmd = [
                npm,
                "install",
                "--prefix",
                str(install_dir),
                "--no-save",
                "--no-audit",
                "--no-fund",
                "--loglevel=error",
                f"azurite@{AZURITE_VERSION}",
            ]
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode != 0 or not installed():
                raise RuntimeError(f"`{' '.join(cmd)}` failed ({done.returncode}): {done.stderr[-2000:]}")
    return str(binary)


def _wait_until_serving(server: AzureBlobServer, proc, log: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while proc.poll() is None:
        try:  # any HTTP answer (an anonymous account request is refused) means Azurite is listening
            wait_for_http(f"{server.account_url}?comp=properties&restype=service", timeout=0.5, ok=(200, 400, 403, 404))
            return
        except TimeoutError:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"Azurite at {server.account_url} did not answer within {timeout:.0f} s; see {log}"
                ) from None
    raise RuntimeError(f"Azurite exited with code {proc.returncode} while starting; see {log}")


@contextmanager
def azurite(workdir: Path, containers: list[str], install_dir: Path | None = None) -> Iterator[AzureBlobServer]:
    """Run Azurite's blob service with private `containers` created; yield it; stop it on exit."""
    workdir = Path(workdir)
    data = workdir / "data"
    data.mkdir(parents=True, exist_ok=True)
    port = free_port()
    cmd = [
        azurite_blob_binary(install_dir),
        "--blobHost",
        "127.0.0.1",
        "--blobPort",
        str(port),
        "--location",
        str(data),
        "--silent",
        "--skipApiVersionCheck",  # azure-storage-blob may speak a newer API version than this Azurite
        "--loose",  # ignore headers Azurite does not know (GDAL's curl sends a few) instead of failing
    ]
    server = AzureBlobServer("127.0.0.1", port)
    log = workdir / "azurite.log"
    with running(cmd, log, cwd=workdir) as proc:
        _wait_until_serving(server, proc, log)
        client = server.client()
        for name in containers:
            client.create_container(name)  # private: no anonymous access, as on Planetary Computer
        yield server
