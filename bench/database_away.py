"""Benchmark: how long `geo-assets launch` takes to say that the webserver's database does not answer.

    .venv/bin/python -m bench.database_away [--repeats 3] [--quick]

A real PostgreSQL (devtools.postgres) reached through a relay that can go silent (devtools.relay: it
accepts connections and never answers, as a database whose packets are dropped), and
the deployment's webserver (`geo-assets-webserver`, geo_assets/webserver/) on deploy/compose/dagster.yaml
(its `connect_timeout`) serving the code location. Each
repeat: the relay forwards, the webserver answers, the relay goes silent, and `geo-assets launch` is
timed from its start until it exits with its one-line error naming the database. The figure is set by
the connect timeout times dagster-postgres's six attempts, with their backoff. Results go to
bench/results/database_away.json and the section between the database-away markers in BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

from bench.common import machine_info, publish
from bench.silent_database import compose_instance, until_ready
from devtools.dagster_dev import BIN, free_port

MEASURES = [
    "bench/database_away.py",
    "geo_assets/cli/graphql.py",
    "geo_assets/cli/commands.py",
    "geo_assets/webserver",
    "deploy/compose/dagster.yaml",
]
REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results" / "database_away.json"
LAUNCH = ["launch", "--region", "synth-holdout", "--date", "2024-06-01", "--select", "imagery_tiles"]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def measure(repeats: int) -> dict:
    connect_timeout = yaml.safe_load((REPO / "deploy/compose/dagster.yaml").read_text())["storage"]["postgres"][
        "postgres_db"
    ]["params"]["connect_timeout"]
    with compose_instance("bench-database-away-") as (relay, env):
        port = free_port()
        url = f"http://127.0.0.1:{port}/graphql"
        web = subprocess.Popen(
            [BIN / "python", "-m", "geo_assets.webserver", "-h", "127.0.0.1", "-p", str(port), "-w", "workspace.yaml"],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        seconds = []
        try:
            for i in range(repeats):
                relay.resume()
                until_ready(url)
                relay.silence()
                started = time.perf_counter()
                proc = subprocess.run(
                    [BIN / "geo-assets", *LAUNCH, "--url", url],
                    cwd=REPO,
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=300,
                )
                seconds.append(time.perf_counter() - started)
                if proc.returncode != 2 or "cannot reach its database" not in proc.stderr:
                    raise RuntimeError(f"launch did not name the database: {proc.stdout[-1000:]}{proc.stderr[-1000:]}")
                log(f"repeat {i + 1}/{repeats}: {seconds[-1]:.1f} s")
        finally:
            os.killpg(web.pid, signal.SIGKILL)
            web.wait(timeout=30)
    return {"connect_timeout_s": connect_timeout, "seconds": seconds, "median_s": statistics.median(seconds)}


def render(info: dict, result: dict) -> str:
    runs = ", ".join(f"{s:.1f}" for s in result["seconds"])
    return (
        f"## A database that does not answer\n\n`geo-assets launch` against the deployment's webserver (`geo-assets-webserver`) whose PostgreSQL accepts "
        f"connections and never answers (deploy/compose/dagster.yaml, connect_timeout {result['connect_timeout_s']} s): "
        f"**{result['median_s']:.1f} s** median from start to its one-line error naming the database "
        f"({len(result['seconds'])} runs: {runs} s).\n\nMachine: {info['nproc']} cores ({info['cpu_model']}), "
        f"dagster {info['dagster']}; {info['date']}; 1-min load average {info['loadavg_1min_at_start']} at the start.\n"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.database_away", description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=3, help="launches timed (default 3)")
    ap.add_argument("--quick", action="store_true", help="1 launch, to check that the benchmark works")
    args = ap.parse_args(argv)
    repeats = 1 if args.quick else args.repeats
    if not 1 <= repeats <= 20:
        ap.error("--repeats must be from 1 to 20")
    info = machine_info()
    result = measure(repeats)
    publish("database-away", MEASURES, RESULTS, {"machine": info, **result}, render(info, result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
