"""Benchmark: a GraphQL launch to its first step started, on the embedded default (SQLite instance, the
queued run coordinator, the daemon and the default run launcher), as `dagster dev` serves it.

    .venv/bin/python -m bench.launch [--repeats 7] [--quick]

A fresh Dagster home (the repository's dagster.yaml) and storage in a temporary directory; `dagster dev`
on 127.0.0.1; each repeat launches `imagery_tiles` of a new date of a one-tile region with
`geo_assets.cli.graphql.DagsterClient.launch_run` and follows the run's events. The latency is from just
before the launch request to the STEP_START event's timestamp (both this machine's clock), split by the
run's own events:

* launch: the GraphQL request, config validation and the run record, to RUN_ENQUEUED
* queue: RUN_ENQUEUED to RUN_STARTING (the daemon's queued-run coordinator dequeues and launches it)
* run process: RUN_STARTING to RUN_START (the launcher's Python process loads the code location)
* step process: RUN_START to STEP_WORKER_STARTED (the multiprocess executor's step process loads it again)
* step setup: STEP_WORKER_STARTED to STEP_START (resources initialised, logs captured)

Beside it, the reference cost that repeats inside a run: a fresh Python process importing the code
location (`import geo_assets.definitions`), timed the same number of times. The target is a median of at
most 5 s. Results go to bench/results/launch.json and the section between the launch markers in
BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import CODE_LOCATION, machine_info, publish

# What the figures measure (bench.stale): a change to any of these since the recorded commit makes them stale.
MEASURES = ["bench/launch.py", *CODE_LOCATION]

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results" / "launch.json"
REGION = ("bench-launch", "400000", "5120000", "402560", "5122560")  # one tile of 256 px at 10 m
TARGET_S = 5.0
PHASES = (
    ("launch", None, "RUN_ENQUEUED"),
    ("queue", "RUN_ENQUEUED", "RUN_STARTING"),
    ("run process", "RUN_STARTING", "RUN_START"),
    ("step process", "RUN_START", "STEP_WORKER_STARTED"),
    ("step setup", "STEP_WORKER_STARTED", "STEP_START"),
)
EVENTS = """
query Events($runId: ID!) {
  logsForRun(runId: $runId) { ... on EventConnection { events { ... on MessageEvent { eventType timestamp stepKey } } } }
  runOrError(runId: $runId) { ... on Run { status } }
}"""


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _stamps(client, run_id: str, timeout: float = 300) -> dict[str, float]:
    """Seconds since the epoch of each run event's first occurrence, once the run has ended."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        data = client.query(EVENTS, {"runId": run_id})
        if data["runOrError"]["status"] in ("SUCCESS", "FAILURE", "CANCELED"):
            stamps: dict[str, float] = {}
            for e in data["logsForRun"]["events"]:
                if e.get("eventType"):
                    stamps.setdefault(e["eventType"], int(e["timestamp"]) / 1000)
            if data["runOrError"]["status"] != "SUCCESS":
                raise RuntimeError(f"run {run_id} ended {data['runOrError']['status']}")
            return stamps
        time.sleep(0.5)
    raise RuntimeError(f"run {run_id} did not end in {timeout} s")


def import_seconds(env: dict) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import geo_assets.definitions"], cwd=REPO, env=env, check=True)
    return time.perf_counter() - started


def measure(repeats: int) -> dict:
    from devtools.dagster_dev import dagster_dev
    from geo_assets.cli.graphql import DagsterClient

    with tempfile.TemporaryDirectory(prefix="bench-launch-") as tmp:
        tmp = Path(tmp)
        home = tmp / "home"
        home.mkdir()
        (home / "dagster.yaml").write_text((REPO / "dagster.yaml").read_text())
        env = {**os.environ, "DAGSTER_HOME": str(home), "GEO_ASSETS_STORAGE_ROOT": (tmp / "storage").as_uri()}
        geo_assets = [str(Path(sys.executable).parent / "geo-assets")]
        subprocess.run(
            [*geo_assets, "region", "add", REGION[0], "--bbox", *REGION[1:], "--crs", "EPSG:32631"],
            cwd=REPO,
            env=env,
            check=True,
            capture_output=True,
        )
        rows, imports = [], []
        with dagster_dev(env, tmp / "dev.log") as url:
            client = DagsterClient(url)
            day = datetime.date(2024, 1, 1)
            for i in range(repeats + 1):  # the first launch warms the code server and is not counted
                key = f"{day + datetime.timedelta(days=i)}|{REGION[0]}"
                sent = time.time()
                run_id = client.launch_run(["imagery_tiles"], key, {}, {})
                stamps = {"sent": sent, **_stamps(client, run_id)}
                row = {"run_id": run_id, "total": stamps["STEP_START"] - sent}
                for name, start, end in PHASES:
                    row[name] = stamps[end] - stamps[start or "sent"]
                if i:
                    rows.append(row)
                    log(
                        f"launch {i}/{repeats}: {row['total']:.2f} s to STEP_START "
                        f"({', '.join(f'{n} {row[n]:.2f}' for n, _, _ in PHASES)})"
                    )
                    imports.append(import_seconds(env))  # alternated with the launches, on the same load
                for _ in client.follow_run(run_id, timeout=300):  # let the last run end before dagster dev stops
                    pass
    return {"rows": rows, "imports": imports}


def render(info: dict, result: dict, repeats: int) -> str:
    rows, med = result["rows"], lambda k: statistics.median(r[k] for r in result["rows"])
    total = med("total")
    phases = "\n".join(f"| {n} | {med(n):.2f} | {100 * med(n) / total:.0f} % |" for n, _, _ in PHASES)
    dominant = max((n for n, _, _ in PHASES), key=med)
    return f"""## launch: GraphQL launch to first step started

What is measured: `imagery_tiles` of a one-tile region launched over GraphQL (`geo_assets.cli.graphql`) on
`dagster dev` with the repository's `dagster.yaml` (SQLite, queued run coordinator, daemon, default run
launcher, multiprocess executor), from just before the request to the `STEP_START` event; {repeats}
launches after one warm-up, each on a new date. Command: `.venv/bin/python -m bench.launch --repeats {repeats}`.
Machine: {info["nproc"]} cores ({info["cpu_model"]}), {info["platform"]}, Python {info["python"]},
dagster {info["dagster"]}, torch {info["torch"]}; {info["date"]}; 1-min load average
{info["loadavg_1min_at_start"]} at the start.

| | median (s) | share |
| --- | --- | --- |
| **launch to STEP_START** | **{total:.2f}** | (target <= {TARGET_S:g} s: {"met" if total <= TARGET_S else "NOT met"}) |
{phases}
| reference: a fresh process importing the code location | {statistics.median(result["imports"]):.2f} | |

Each run: {", ".join(f"{r['total']:.2f}" for r in rows)} s. What dominates: **{dominant}**. The queue
phase is the daemon's dequeue interval (`run_coordinator.config.dequeue_interval_seconds` in
`dagster.yaml`); the run-process and step phases each start a Python process that imports the code
location (dagster and rasterio; torch only in steps that train or predict: the reference row), once for
the run and once more for the step under the multiprocess executor (step setup is mostly that second
load: resources initialise in milliseconds). Two loads of the code location are most of the time: an
in-process executor for the embedded default would drop the step process."""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.launch", description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=7, help="launches timed (default 7)")
    ap.add_argument("--quick", action="store_true", help="2 launches, to check that the benchmark works")
    args = ap.parse_args(argv)
    repeats = 2 if args.quick else args.repeats
    if not 1 <= repeats <= 100:
        ap.error("--repeats must be from 1 to 100")
    info = machine_info()
    result = measure(repeats)
    publish("launch", MEASURES, RESULTS, {"machine": info, "repeats": repeats, **result}, render(info, result, repeats))
    return 0


if __name__ == "__main__":
    sys.exit(main())
