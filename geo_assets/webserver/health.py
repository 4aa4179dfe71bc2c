"""Whether the instance's database answers and when its daemon last reported, asked cheaply.

Each answer is cached for a few seconds and asked by one caller at a time, so a page load never pays
more than one short database check, however many requests arrive at once.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import anyio
import sqlalchemy as sa
from dagster import DagsterInstance

from geo_assets.cli.graphql import DAEMON_SILENT_S

# A database that does not answer (packets dropped) costs a check this long; libpq's least is 2 s.
CONNECT_TIMEOUT_S = 2
CACHE_S = 5.0


@dataclass(frozen=True)
class DatabaseDown:
    where: str  # "PostgreSQL at host:port, database NAME": never the password
    cause: str  # the driver's message, one line
    error: str  # the exception's class, e.g. psycopg2.OperationalError

    @property
    def message(self) -> str:
        return f"The Dagster webserver cannot reach its database, {self.where}: {self.cause}"


def storage_url(instance: DagsterInstance) -> sa.engine.URL | None:
    """The SQLAlchemy URL of the instance's run storage; None for storages without a server (SQLite)."""
    storage = instance.run_storage
    url = getattr(storage, "postgres_url", None) or getattr(storage, "mysql_url", None)
    return sa.engine.make_url(url) if url else None


def describe(url: sa.engine.URL) -> str:
    """Where the database is, in words: its server's host:port and the database's name (no credentials)."""
    backend = url.get_backend_name()
    kind, port = {"postgresql": ("PostgreSQL", 5432), "mysql": ("MySQL", 3306)}.get(backend, (backend, None))
    return f"{kind} at {url.host}:{url.port or port}, database {url.database}"


class Services:
    """The state of the services a webserver of `instance` needs, each answer at most CACHE_S old."""

    def __init__(self, instance: DagsterInstance, cache_s: float = CACHE_S, daemon_silent_s: float = DAEMON_SILENT_S):
        self.instance, self.cache_s, self.daemon_silent_s = instance, cache_s, daemon_silent_s
        self.url = storage_url(instance)
        self.engine = None
        if self.url is not None:
            args = {"connect_timeout": CONNECT_TIMEOUT_S} if self.url.get_backend_name() == "postgresql" else {}
            self.engine = sa.create_engine(self.url, poolclass=sa.pool.NullPool, connect_args=args)
        self._database_lock, self._daemon_lock = asyncio.Lock(), asyncio.Lock()
        self._database: tuple[float, DatabaseDown | None] = (-1e9, None)
        self._daemon: tuple[float, str | None] = (-1e9, None)

    async def database(self, max_age: float | None = None) -> DatabaseDown | None:
        """None when the database answers; else why not. `max_age=0` asks it now."""
        max_age = self.cache_s if max_age is None else max_age
        asked = time.monotonic()
        async with self._database_lock:
            at, state = self._database
            if time.monotonic() - at <= max_age or at >= asked:  # fresh enough, or asked while we waited
                return state
            state = await anyio.to_thread.run_sync(self._check_database)
            self._database = (time.monotonic(), state)
            return state

    def _check_database(self) -> DatabaseDown | None:
        if self.engine is None or self.url is None:  # one is None when the other is
            return None
        try:
            with self.engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
            return None
        except sa.exc.DBAPIError as exc:
            original = exc.orig or exc
            lines = [" ".join(line.split()) for line in str(original).splitlines()]  # libpq's hint: a line of its own
            cause = "; ".join(line for line in lines if line)
            error = f"{type(original).__module__}.{type(original).__qualname__}"
            return DatabaseDown(describe(self.url), cause[:500], error)

    async def daemon(self) -> str | None:
        """One sentence when the daemon has not reported for daemon_silent_s (or never); else None."""
        async with self._daemon_lock:
            at, state = self._daemon
            if time.monotonic() - at <= self.cache_s:
                return state
            state = await anyio.to_thread.run_sync(self._check_daemon)
            self._daemon = (time.monotonic(), state)
            return state

    def _check_daemon(self) -> str | None:
        required = set(self.instance.get_required_daemon_types())
        if not required:
            return None
        try:
            heartbeats = self.instance.get_daemon_heartbeats()
        except Exception:  # the database went away meanwhile: its own message says so
            return None
        # One `dagster-daemon run` beats for every daemon it runs: the newest beat says whether it runs.
        beats = [b.timestamp for t, b in heartbeats.items() if t in required]
        if not beats:
            return daemon_silent(None)
        age = time.time() - max(beats)
        return daemon_silent(age) if age > self.daemon_silent_s else None


def daemon_silent(age: float | None) -> str:
    since = "has never reported" if age is None else f"has not reported for {age:.0f} s"
    return f"The Dagster daemon {since}: queued runs will not start, sensors and schedules do not tick."
