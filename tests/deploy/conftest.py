"""A real PostgreSQL server for the deployed instances' tests.

Debian's `postgresql` package provides the binaries (installed here with apt-get when they are
missing: the fixture runs as root on CI). initdb refuses to run as root, so the cluster belongs to
an unprivileged user (`postgres`, which the package creates). The server listens on 127.0.0.1 on a
free port with password authentication, so the instance yamls' password really travels.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest

PG_ROOT = Path("/usr/lib/postgresql")
USER = "dagster"
# Characters that must be quoted in a connection URL: proves the yamls' password reaches libpq intact.
PASSWORD = "pg-p@ss/w:rd%1"


@dataclass(frozen=True)
class Postgres:
    host: str
    port: int
    user: str
    password: str = field(repr=False)
    db: str

    def env(self) -> dict[str, str]:
        """The variables the instance yamls in deploy/ read."""
        return {
            "DAGSTER_PG_HOST": self.host, "DAGSTER_PG_PORT": str(self.port), "DAGSTER_PG_USER": self.user,
            "DAGSTER_PG_PASSWORD": self.password, "DAGSTER_PG_DB": self.db,
        }

    def connect(self):
        import psycopg2

        return psycopg2.connect(host=self.host, port=self.port, user=self.user, password=self.password, dbname=self.db)


def _bin_dir() -> Path | None:
    """Debian's PostgreSQL binaries: version 15 where present, else the newest installed."""
    if (PG_ROOT / "15/bin/initdb").exists():
        return PG_ROOT / "15/bin"
    found = sorted(PG_ROOT.glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0)
    return found[-1].parent if found else None


def _install_postgres() -> Path:
    """apt-get install postgresql once; a no-op when the binaries are there."""
    found = _bin_dir()
    if found:
        return found
    if os.geteuid() != 0:
        pytest.fail("PostgreSQL is not installed and this user cannot install it: run `apt-get install -y postgresql` as root")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    cmd = ["apt-get", "install", "-y", "--no-install-recommends", "postgresql"]
    if subprocess.run(cmd, env=env, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update"], env=env, check=True, capture_output=True)
        subprocess.run(cmd, env=env, check=True, capture_output=True)
    found = _bin_dir()
    if not found:
        pytest.fail(f"apt-get installed postgresql but no initdb lies under {PG_ROOT}")
    return found


def _server_user() -> pwd.struct_passwd | None:
    """The unprivileged owner of the cluster when running as root (None: run as ourselves)."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam("postgres")
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "postgres"], check=True)
        return pwd.getpwnam("postgres")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def postgres():
    bindir = _install_postgres()
    owner = _server_user()
    as_owner = {"user": owner.pw_uid, "group": owner.pw_gid} if owner else {}
    work = Path(tempfile.mkdtemp(prefix="geo-assets-pg-"))  # under /tmp: the owner can reach it
    data = work / "data"
    pwfile = work / "pw"
    pwfile.write_text(PASSWORD + "\n")
    if owner:
        os.chown(work, owner.pw_uid, owner.pw_gid)
        os.chown(pwfile, owner.pw_uid, owner.pw_gid)
    pwfile.chmod(0o600)
    port = _free_port()
    log = work / "server.log"

    def run(*cmd):
        proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, cwd=work, **as_owner)
        if proc.returncode != 0:
            tail = log.read_text()[-2000:] if log.exists() else ""
            pytest.fail(f"{cmd[0]} failed ({proc.returncode}): {proc.stderr[-2000:]}\n{tail}")

    run(bindir / "initdb", "-D", data, "-U", USER, f"--pwfile={pwfile}", "--auth-local=trust",
        "--auth-host=scram-sha-256", "--encoding=UTF8", "--locale=C")
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {work} -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    run(bindir / "pg_ctl", "-D", data, "-o", options, "-l", log, "-w", "-t", "60", "start")
    try:
        server = Postgres("127.0.0.1", port, USER, PASSWORD, "postgres")
        conn = server.connect()
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("CREATE DATABASE geo_assets")
        conn.close()
        yield Postgres("127.0.0.1", port, USER, PASSWORD, "geo_assets")
    finally:
        subprocess.run([str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"], capture_output=True, cwd=work, **as_owner)
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture
def fresh_db(postgres):
    """A database of its own for one test (the instance creates its tables in it)."""
    import uuid

    name = "t_" + uuid.uuid4().hex[:12]
    conn = postgres.connect()
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    conn.close()
    return Postgres(postgres.host, postgres.port, postgres.user, postgres.password, name)
