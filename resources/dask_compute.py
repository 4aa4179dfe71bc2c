"""Tile work on a Dask cluster: the `compute` resource when GEO_ASSETS_COMPUTE=dask.

The cluster is an existing scheduler (`address`), or one created for the step and closed after it,
even when the step fails: a `LocalCluster` of worker processes, or an ephemeral cloud cluster with
dask-kubernetes (`KubeCluster`, GKE or EKS) or dask-cloudprovider (`GCPCluster`, `FargateCluster`,
`EC2Cluster`), fixed in size or adaptive between a minimum and a maximum of workers.

What crosses the scheduler is small: the batch's manifest entries or tiles and a work object naming
store keys. Workers read and write the store by URI, as the thread pool does. Batches are sized from
measurements (an empty task's round trip, what a tile costs on a worker; `BatchSizer`), a probe wave
first and then the whole plan at once, so an adaptive cluster sees the backlog and scales out.
Outcomes stream back as they complete: each carries the `geo_assets` log records its batch emitted
and is logged as progress; the first failure fails the step with the tile's key and the worker's
traceback. A worker lost while it runs one of our batches fails the step at once, naming the worker
and the batch (the scheduler's remove-worker event), rather than leaving Dask to retry out of sight;
batches already done are recorded, so a re-execution from failure computes only the rest.

Why not dagster-dask here: its `dask_executor` runs each *step* as a Dask task, a choice of the job's
executor (the step level); tiles fan out *inside* one step. Its `dask_resource` builds a cluster
from a table of classes and connects as soon as the resource initialises: the table has neither
`GCPCluster` nor `EC2Cluster` nor adaptive scaling, and every step that names the resource would
start a cluster, even steps that never fan out. So this resource builds its cluster the same way
(the class by name, closed after use), but on the first batch of tile work.
"""

from __future__ import annotations

import importlib
import json
import queue
import re
import statistics
import time
import uuid
from typing import Any, cast

import dagster as dg
from pydantic import Field, PrivateAttr, model_validator

from geo_assets.engine.batches import noop, run_batch
from geo_assets.engine.jobs import TileJob, TileWorkError
from geo_assets.settings import by_name
from resources.compute import MAX_TILES_PER_BATCH, TileCompute

CLUSTERS = {  # kind -> (module, class): built by name, so only the kind in use is imported
    "local": ("distributed", "LocalCluster"),
    "kubernetes": ("dask_kubernetes.operator", "KubeCluster"),
    "gcp": ("dask_cloudprovider.gcp", "GCPCluster"),
    "fargate": ("dask_cloudprovider.aws", "FargateCluster"),
    "ec2": ("dask_cloudprovider.aws", "EC2Cluster"),
}
_ADDRESS = re.compile(r"^((tcp|tls|ws|wss|ucx)://)?[A-Za-z0-9.\-\[\]:]+:\d{1,5}$")
ROUND_TRIPS = 5  # empty tasks timed to measure a batch's round trip
POLL_SECONDS = 1.0  # how often a waiting step checks that workers exist

SETTINGS = {  # field -> its deployment setting (geo_assets/settings.py), read by dask_compute_from_env
    "address": by_name("GEO_ASSETS_DASK_ADDRESS"),
    "cluster": by_name("GEO_ASSETS_DASK_CLUSTER"),
    "n_workers": by_name("GEO_ASSETS_DASK_WORKERS"),
    "threads_per_worker": by_name("GEO_ASSETS_DASK_THREADS"),
    "minimum_workers": by_name("GEO_ASSETS_DASK_MIN_WORKERS"),
    "maximum_workers": by_name("GEO_ASSETS_DASK_MAX_WORKERS"),
    "image": by_name("GEO_ASSETS_DASK_IMAGE"),
    "cluster_options": by_name("GEO_ASSETS_DASK_CLUSTER_OPTIONS"),
    "connect_timeout": by_name("GEO_ASSETS_DASK_CONNECT_TIMEOUT"),
    "worker_timeout": by_name("GEO_ASSETS_DASK_WORKER_TIMEOUT"),
}
ENV = {field: setting.name for field, setting in SETTINGS.items()}  # the variables, for messages
MAX_WORKERS = int(cast(float, SETTINGS["n_workers"].high))  # a bounded setting: its high is set


def round_trip(client, repeats: int = ROUND_TRIPS) -> float:
    """Median seconds for an empty task to go to a worker and back: a batch's fixed cost."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        client.submit(noop, pure=False).result()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


class DaskUnavailableError(RuntimeError):
    """No Dask cluster to run on: the scheduler did not answer, or no worker joined in time."""


class DaskCompute(TileCompute):
    """Tile batches on a Dask cluster; `map` (in-process reads) stays on the local thread pool."""

    address: str | None = None  # an existing scheduler, e.g. tcp://scheduler:8786
    cluster: str | None = None  # else a cluster of this kind for the step: a key of CLUSTERS (default local)
    n_workers: int = Field(default=2, ge=1, le=MAX_WORKERS)  # a fixed-size cluster's workers
    threads_per_worker: int = Field(default=1, ge=1, le=256)
    minimum_workers: int = Field(default=0, ge=0, le=MAX_WORKERS)
    maximum_workers: int = Field(default=0, ge=0, le=MAX_WORKERS)  # > 0: adaptive, minimum to maximum
    image: str | None = None  # the workers' container image (cloud kinds): the code location's image
    cluster_options: dict[str, Any] = {}  # further arguments of the cluster class (zone, machine type, ...)
    connect_timeout: float = Field(default=10.0, gt=0, le=600, allow_inf_nan=False)
    worker_timeout: float = Field(default=300.0, gt=0, le=3600, allow_inf_nan=False)  # for a first worker

    _client: Any = PrivateAttr(default=None)
    _cluster: Any = PrivateAttr(default=None)
    _run_id: str = PrivateAttr(default="")

    @model_validator(mode="after")
    def _consistent(self) -> DaskCompute:
        if self.cluster is not None and self.cluster not in CLUSTERS:
            raise ValueError(f"{ENV['cluster']}={self.cluster!r}; accepted: {', '.join(CLUSTERS)}")
        if self.address is not None:
            if self.cluster is not None:
                raise ValueError(
                    f"{ENV['address']} and {ENV['cluster']} exclude each other: connect to a scheduler, or create a cluster"
                )
            if not _ADDRESS.fullmatch(self.address):
                raise ValueError(
                    f"{ENV['address']}={self.address!r} is not a scheduler address such as tcp://host:8786"
                )
        if self.minimum_workers > self.maximum_workers > 0:
            raise ValueError(
                f"{ENV['minimum_workers']}={self.minimum_workers} exceeds {ENV['maximum_workers']}={self.maximum_workers}"
            )
        if self.kind not in ("local", "address") and not self.image:
            raise ValueError(
                f"a {self.kind} cluster needs {ENV['image']}: the image its workers run (the code location's)"
            )
        reserved = set(self.cluster_options) & set(self._arguments(self.kind, "name"))
        if reserved:
            raise ValueError(
                f"{ENV['cluster_options']} may not set {', '.join(sorted(reserved))}: "
                f"use {ENV['n_workers']}, {ENV['threads_per_worker']} and {ENV['image']}"
            )
        return self

    @property
    def kind(self) -> str:
        return "address" if self.address else (self.cluster or "local")

    @property
    def adaptive(self) -> bool:
        return self.maximum_workers > 0

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self._run_id = context.run.run_id if context.run else uuid.uuid4().hex

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        client, cluster = self._client, self._cluster
        self._client = self._cluster = None
        try:
            if client is not None:
                client.close()
        finally:
            if cluster is not None:
                cluster.close()

    # --- the cluster ------------------------------------------------------------------------------

    def _arguments(self, kind: str, name: str) -> dict:
        """The cluster class's arguments that these settings decide."""
        n = self.minimum_workers if self.adaptive else self.n_workers
        t = self.threads_per_worker
        arguments: dict[str, dict[str, Any]] = {
            "address": {},
            "local": {
                "n_workers": n,
                "threads_per_worker": t,
                "processes": True,
                "host": "127.0.0.1",
                "dashboard_address": "127.0.0.1:0",
            },
            "kubernetes": {
                "name": name,
                "image": self.image,
                "n_workers": n,
                "worker_command": ["dask", "worker", "--nthreads", str(t)],
            },
            "gcp": {"docker_image": self.image, "n_workers": n, "worker_options": {"nthreads": t}},
            "fargate": {"image": self.image, "n_workers": n, "worker_nthreads": t},
            "ec2": {"docker_image": self.image, "n_workers": n, "worker_options": {"nthreads": t}},
        }
        return arguments[kind]

    def make_cluster(self):
        module, class_name = CLUSTERS[self.kind]
        name = f"geo-assets-{self._run_id[:8] or uuid.uuid4().hex[:8]}"  # a Kubernetes name: the run's
        try:
            cluster = getattr(importlib.import_module(module), class_name)(
                **self._arguments(self.kind, name), **self.cluster_options
            )
        except Exception as exc:  # the control plane refused it: quota, a bad image, a spec the API rejects
            raise DaskUnavailableError(f"could not create the {self.kind} Dask cluster ({class_name}): {exc}") from None
        if self.adaptive:
            cluster.adapt(minimum=self.minimum_workers, maximum=self.maximum_workers)
        return cluster

    def client(self):
        """The client of this step's cluster, connecting (or creating the cluster) on first use."""
        if self._client is not None:
            return self._client
        from distributed import Client

        if self.address:
            try:
                self._client = Client(self.address, timeout=self.connect_timeout, set_as_default=False)
            except (OSError, TimeoutError) as exc:
                raise DaskUnavailableError(
                    f"the Dask scheduler at {self.address} ({ENV['address']}) did not answer within "
                    f"{self.connect_timeout:g} s: {exc}"
                ) from None
        else:
            self._cluster = self.make_cluster()
            self._client = Client(self._cluster, set_as_default=False)
        return self._client

    # --- running batches --------------------------------------------------------------------------

    def _execute(self, job: TileJob) -> None:
        client = self.client()
        job.log.info(f"{job.label}: {len(job.todo)} tiles on Dask ({self.kind}; dashboard {client.dashboard_link})")
        threads = sum(client.nthreads().values())
        planned_slots = self.maximum_workers * self.threads_per_worker if self.adaptive else 0
        sizer = self._sizer(job, slots=max(threads, planned_slots, 1), overhead=0.0)
        token = uuid.uuid4().hex[:8]
        slug = re.sub(r"[^a-z0-9]+", "-", job.label.lower()).strip("-")
        events: queue.Queue = queue.Queue()  # finished batches and lost workers, in arrival order
        running: dict[str, Any] = {}  # Dask key -> future

        def submit() -> None:
            args = job.take(sizer.size(job.remaining))
            future = client.submit(run_batch, *args, key=f"{slug}-{args[5]}-{token}", pure=False)
            running[future.key] = future
            future.add_done_callback(events.put)

        def on_event(event: tuple) -> None:  # the scheduler's "all" topic, on the client's thread
            msg = event[1]
            if isinstance(msg, dict) and msg.get("action") == "remove-worker" and not msg.get("expected"):
                keys = set(msg.get("processing-tasks", ())) | set(msg.get("lost-computed-tasks", ()))
                events.put(("lost", msg.get("worker"), keys))

        client.subscribe_topic("all", on_event)
        try:
            for _ in range(max(threads, 1)):  # a probe wave: one batch per worker thread
                if job.remaining:
                    submit()
            planned = False
            while running:
                item = self._next(events, client)
                if isinstance(item, tuple):  # a worker left unexpectedly: did it hold one of ours?
                    if item[2] & running.keys():
                        raise TileWorkError(self._lost(job, item[1], sorted(item[2] & running.keys())))
                    continue
                del running[item.key]
                outcome = self._outcome(job, item)
                job.accept(outcome)
                sizer.observe(outcome)
                if not planned and job.remaining:
                    sizer.overhead = round_trip(client)
                    job.planned(sizer)
                    while job.remaining:
                        submit()
                planned = True
        finally:
            client.unsubscribe_topic("all")
            if running:
                client.cancel(list(running.values()))

    def _next(self, events: queue.Queue, client):
        """The next finished future or lost-worker event; fails when no worker is left for too long."""
        since = time.monotonic()
        while True:
            try:
                return events.get(timeout=POLL_SECONDS)
            except queue.Empty:
                if client.nthreads():
                    since = time.monotonic()
                elif time.monotonic() - since > self.worker_timeout:
                    raise DaskUnavailableError(
                        f"no Dask worker in the {self.kind} cluster for {self.worker_timeout:g} s "
                        f"({ENV['worker_timeout']}); the scheduler is {client.scheduler.address}"
                    ) from None

    def _outcome(self, job: TileJob, future):
        try:
            return future.result()
        except Exception as exc:  # the batch never ran to its end: not our code's failure
            index = future.key.rsplit("-", 2)[1]
            raise TileWorkError(
                f"{job.label}: batch {index} failed on the Dask cluster before returning: {type(exc).__name__}: {exc}"
            ) from None

    def _lost(self, job: TileJob, worker: str, keys: list[str]) -> str:
        batches = ", ".join(k.rsplit("-", 2)[1] for k in keys)
        return (
            f"{job.label}: Dask worker {worker} was lost while it ran batch {batches} (its process ended or "
            f"its connection dropped: out of memory, a preempted node, a crash). Batches already done are "
            f"recorded: re-execute the run from failure to compute only the missing tiles."
        )


def dask_compute_from_env(workers: int, tiles_per_batch: int) -> DaskCompute:
    """The Dask settings from the environment, each checked with a message naming its variable."""
    env = {field: setting.get() for field, setting in SETTINGS.items()}  # each typed and within its bounds
    options: dict = {}
    if env["cluster_options"]:
        try:
            options = json.loads(env["cluster_options"])
        except json.JSONDecodeError as exc:
            raise ValueError(f"{ENV['cluster_options']} is not JSON: {exc}") from None
        if not isinstance(options, dict):
            raise ValueError(f"{ENV['cluster_options']} must be a JSON object of the cluster class's arguments")
    return DaskCompute(
        workers=workers,
        tiles_per_batch=min(tiles_per_batch, MAX_TILES_PER_BATCH),
        **{**env, "cluster_options": options},
    )
