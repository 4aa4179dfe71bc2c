"""Benchmark: what the deployment's webserver (geo_assets/webserver/) costs, and how soon it names a database
that does not answer, against Dagster's plain `dagster-webserver` on the same instance.

    .venv/bin/python -m bench.service_messages [--requests 30] [--repeats 3] [--quick]

A real PostgreSQL (devtools.postgres) reached through a relay that can go silent (devtools.relay), the
instance of deploy/compose/dagster.yaml (its connect_timeout), and both webservers serving the code
location side by side. Healthy: the median time of a UI page load (GET with Accept: text/html) and of a
small GraphQL query, `--requests` of each per webserver, interleaved. Database silent: for each repeat,
two page loads per webserver after the silence, timed; the second opens a new connection (Dagster's:
HTTP 500 after dagster-postgres's retries; ours: HTTP 503 naming the database). Results go to
bench/results/service_messages.json and the section between the service-messages markers in BENCHMARKS.md.
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

import requests

from bench.common import machine_info, publish
from bench.silent_database import compose_instance, until_ready
from devtools.dagster_dev import BIN, free_port

MEASURES = ["bench/service_messages.py", "geo_assets/webserver", "deploy/compose/dagster.yaml"]
REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results" / "service_messages.json"
PAGE = {"Accept": "text/html,application/xhtml+xml"}
QUERY = {"query": "{ runsOrError(limit: 1) { __typename } }"}
COMMANDS = {
    "dagster-webserver": [str(BIN / "dagster-webserver")],
    "geo-assets-webserver": [str(BIN / "python"), "-m", "geo_assets.webserver"],
}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def timed(call) -> tuple[float, int]:
    started = time.perf_counter()
    status = call().status_code
    return time.perf_counter() - started, status


def measure(n_requests: int, repeats: int) -> dict:
    with compose_instance("bench-service-messages-") as (relay, env):
        bases, procs = {}, []
        try:
            for name, command in COMMANDS.items():
                port = free_port()
                bases[name] = f"http://127.0.0.1:{port}"
                procs.append(
                    subprocess.Popen(
                        [*command, "-h", "127.0.0.1", "-p", str(port), "-w", "workspace.yaml"],
                        cwd=REPO,
                        env=env,
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                        start_new_session=True,
                    )
                )
            healthy: dict[str, dict[str, list[float]]] = {name: {"page": [], "graphql": []} for name in bases}
            for base in bases.values():
                until_ready(f"{base}/graphql")
                requests.get(f"{base}/runs", headers=PAGE, timeout=60)  # warm: first page, first pooled connection
            for _ in range(n_requests):
                for name, base in bases.items():  # interleaved: both see the same load
                    for what, call in (
                        ("page", lambda base=base: requests.get(f"{base}/runs", headers=PAGE, timeout=60)),
                        ("graphql", lambda base=base: requests.post(f"{base}/graphql", json=QUERY, timeout=60)),
                    ):
                        seconds, status = timed(call)
                        assert status == 200, (name, what, status)
                        healthy[name][what].append(seconds)
            silent: dict[str, list[float]] = {name: [] for name in bases}
            statuses: dict[str, int] = {}
            for i in range(repeats):
                relay.resume()
                for base in bases.values():
                    until_ready(f"{base}/graphql")
                relay.silence()
                for name, base in bases.items():
                    # Two loads: the first may fail at once on the pooled connection the silence cut; the
                    # second opens a new one, which is where a silent database costs time.
                    for _ in range(2):
                        seconds, status = timed(
                            lambda base=base: requests.get(f"{base}/runs", headers=PAGE, timeout=300)
                        )
                        silent[name].append(seconds)
                        statuses[name] = max(statuses.get(name, 0), status)
                log(
                    f"silent {i + 1}/{repeats}: "
                    + ", ".join(f"{n} {s[-2]:.1f} s, {s[-1]:.1f} s" for n, s in silent.items())
                )
        finally:
            for proc in procs:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
    return {
        "requests": n_requests,
        "healthy_median_ms": {n: {w: 1000 * statistics.median(v) for w, v in d.items()} for n, d in healthy.items()},
        "silent_seconds": silent,
        "silent_median_s": {
            n: {"first": statistics.median(v[0::2]), "second": statistics.median(v[1::2])} for n, v in silent.items()
        },
        "silent_status": statuses,
    }


def render(info: dict, r: dict) -> str:
    ms, s = r["healthy_median_ms"], r["silent_median_s"]
    rows = "\n".join(
        f"| `{n}` | {ms[n]['page']:.1f} | {ms[n]['graphql']:.1f} | {s[n]['first']:.1f} | {s[n]['second']:.1f} "
        f"(HTTP {r['silent_status'][n]}) |"
        for n in ms
    )
    return (
        "## The webserver's service messages\n\nThe deployment's webserver (`geo-assets-webserver`: Dagster's app in "
        "a middleware that names an unreachable database and a silent daemon) against Dagster's `dagster-webserver`, "
        f"side by side on one instance (deploy/compose/dagster.yaml). Healthy: median of {r['requests']} requests each. "
        "Silent database: the first and the second page load after the silence (Dagster's first fails at once on "
        "the pooled connection the silence cut; ours asks the database, then answers from its 5 s cache), median of "
        f"{len(next(iter(r['silent_seconds'].values()))) // 2} repeats.\n\n"
        "| webserver | page load, ms | GraphQL query, ms | database silent: first page, s | second page, s |\n"
        "| --- | --- | --- | --- | --- |\n"
        f"{rows}\n\nMachine: {info['nproc']} cores ({info['cpu_model']}), dagster {info['dagster']}; {info['date']}; "
        f"1-min load average {info['loadavg_1min_at_start']} at the start.\n"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.service_messages", description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=30, help="healthy requests of each kind per webserver (default 30)")
    ap.add_argument("--repeats", type=int, default=3, help="silences timed (default 3)")
    ap.add_argument("--quick", action="store_true", help="5 requests, 1 silence: to check that the benchmark works")
    args = ap.parse_args(argv)
    n_requests, repeats = (5, 1) if args.quick else (args.requests, args.repeats)
    if not 1 <= n_requests <= 1000 or not 1 <= repeats <= 20:
        ap.error("--requests must be from 1 to 1000 and --repeats from 1 to 20")
    info = machine_info()
    result = measure(n_requests, repeats)
    publish("service-messages", MEASURES, RESULTS, {"machine": info, **result}, render(info, result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
