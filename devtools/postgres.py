"""A throwaway PostgreSQL server on 127.0.0.1 for the instance yamls in deploy/.

Debian's `postgresql` package provides the binaries; they are installed with apt-get when missing
(as root, as on CI). initdb refuses to run as root, so when we are root the cluster belongs to the
unprivileged `postgres` user that the package creates. The server listens on a free port with
password authentication (scram-sha-256), so the password in DAGSTER_PG_PASSWORD really travels.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

from devtools import apt
from devtools.emulators import free_port

PG_ROOT = Path("/usr/lib/postgresql")
USER = "dagster"
# Characters that must be quoted in a connection URL: proves the password reaches libpq intact.
PASSWORD = "pg-p@ss/w:rd%1"


@dataclass(frozen=True)
class Postgres:
    host: str
    port: int
    user: str
    password: str = field(repr=False)
    db: str
    pg_ctl: Callable[[str], None] | None = field(default=None, repr=False, compare=False)  # "stop" | "start"

    def stop(self) -> None:
        """Stop the server (fast shutdown: sessions are cut), as a database host going down."""
        self.pg_ctl("stop")

    def start(self) -> None:
        """Start the stopped server again on the same port and data."""
        self.pg_ctl("start")

    def env(self) -> dict[str, str]:
        """The variables the instance yamls in deploy/ read."""
        return {
            "DAGSTER_PG_HOST": self.host,
            "DAGSTER_PG_PORT": str(self.port),
            "DAGSTER_PG_USER": self.user,
            "DAGSTER_PG_PASSWORD": self.password,
            "DAGSTER_PG_DB": self.db,
        }

    def connect(self):
        import psycopg2

        return psycopg2.connect(host=self.host, port=self.port, user=self.user, password=self.password, dbname=self.db)

    def create_database(self, name: str | None = None) -> Postgres:
        """A new, empty database on this server (Dagster creates its tables on first use)."""
        name = name or "t_" + uuid.uuid4().hex[:12]
        conn = self.connect()
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute(f'CREATE DATABASE "{name}"')
        finally:
            conn.close()
        return replace(self, db=name)


def bin_dir() -> Path | None:
    """Debian's PostgreSQL binaries: version 15 where present, else the newest installed."""
    if (PG_ROOT / "15/bin/initdb").exists():
        return PG_ROOT / "15/bin"
    versions = [p.parent for p in PG_ROOT.glob("*/bin/initdb") if p.parent.parent.name.isdigit()]
    return max(versions, key=lambda p: int(p.parent.name)) if versions else None


def install() -> Path:
    """apt-get install postgresql when its binaries are missing; return their folder."""
    found = bin_dir()
    if found:
        return found
    apt.install(["postgresql"])
    found = bin_dir()
    if not found:
        raise RuntimeError(f"apt-get installed postgresql but no initdb lies under {PG_ROOT}")
    return found


def _owner() -> pwd.struct_passwd | None:
    """The unprivileged owner of the cluster when we are root (None: run as ourselves)."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam("postgres")
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "postgres"], check=True
        )
        return pwd.getpwnam("postgres")


@contextmanager
def postgres_server(db: str = "geo_assets") -> Iterator[Postgres]:
    """initdb + start a server with database `db`; yield its address and credentials; stop and remove it."""
    bindir = install()
    owner = _owner()
    as_owner = {"user": owner.pw_uid, "group": owner.pw_gid} if owner else {}
    work = Path(tempfile.mkdtemp(prefix="geo-assets-pg-"))  # under /tmp, which the owner can reach
    data, pwfile, log = work / "data", work / "pw", work / "server.log"
    pwfile.write_text(PASSWORD + "\n")
    pwfile.chmod(0o600)
    if owner:
        os.chown(work, owner.pw_uid, owner.pw_gid)
        os.chown(pwfile, owner.pw_uid, owner.pw_gid)
    port = free_port()

    def run(*cmd) -> None:
        proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, cwd=work, **as_owner)
        if proc.returncode != 0:
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise RuntimeError(f"{Path(str(cmd[0])).name} failed ({proc.returncode}): {proc.stderr[-2000:]}\n{tail}")

    try:
        run(
            bindir / "initdb",
            "-D",
            data,
            "-U",
            USER,
            f"--pwfile={pwfile}",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "--encoding=UTF8",
            "--locale=C",
        )
        options = (
            f"-c listen_addresses=127.0.0.1 -p {port} -k {work} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )

        def pg_ctl(action: str) -> None:
            fast = ["-m", "fast"] if action == "stop" else []
            run(bindir / "pg_ctl", "-D", data, "-o", options, "-l", log, "-w", "-t", "60", *fast, action)

        pg_ctl("start")
        try:
            yield Postgres("127.0.0.1", port, USER, PASSWORD, "postgres", pg_ctl).create_database(db)
        finally:
            subprocess.run(
                [str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
                capture_output=True,
                cwd=work,
                **as_owner,
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)
