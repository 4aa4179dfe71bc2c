"""The step/run level: a backfill of 16 region-date partitions as runs, against the same work in one process.

- runs: each partition of `imagery_tiles` launched as a run over GraphQL into the instance's queue
  (`dagster dev`: webserver and daemon on the embedded default's dagster.yaml, which runs two at a
  time), each run a run-worker process whose multiprocess executor runs the step in a process of its
  own: what a backfill of these partitions does. The timer runs from the first launch to the end of
  the last run; `dagster dev` is started (and the code location loaded) before it.
- one process: `execute_in_process` on each partition in a loop, in one process that has loaded the
  code location before its timer starts.

Both cut the same synthetic region on the same 16 dates at the same tile size, with the same tile
thread pool inside the step (GEO_ASSETS_WORKERS, default one per core), into storage roots of their
own; every partition's tiles are asserted identical (the pixel digests in the manifests). Why one
run per partition and not one multi-partition run: `imagery_tiles` stores, tags and retries one
partition per run, so a backfill of it launches one run per partition.

Usage: python -m bench.runs [--quick] [--dates 16] [--tiles-per-side 4] [--tile-size 256] [--repeats 3]
Writes the `runs` section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import CODE_LOCATION, REPO, machine_info, write_section

# What the figures measure (bench.stale): a change to any of these since the recorded commit makes them stale.
MEASURES = ["bench/runs.py", *CODE_LOCATION]

REGION = "bench-runs"
ORIGIN = (400000.0, 5120000.0)  # on the grid, EPSG:32631 (as the built-in synthetic regions)


def dates(n: int) -> list[str]:
    start = datetime.date(2024, 6, 1)
    return [(start + datetime.timedelta(days=i)).isoformat() for i in range(n)]


def prepare(work: Path, tiles_per_side: int, tile_size: int, dates_: list[str]) -> tuple[dict, dict]:
    """Two Dagster homes and storage roots (runs, one process), each with the region catalogued and registered."""
    import dagster as dg

    from geo_assets.cli.commands import register
    from geo_assets.geo.regions import Region, load_catalogue, save_catalogue
    from geo_assets.geo.store import Store, local_root

    side = tiles_per_side * tile_size * 10.0  # 10 m pixels
    region = Region(
        REGION,
        (ORIGIN[0], ORIGIN[1], ORIGIN[0] + side, ORIGIN[1] + side),
        "EPSG:32631",
        "synthetic",
        "synthetic",
        tuple(dates_),
    )
    envs = {}
    for mode in ("runs", "one-process"):
        home, root = work / mode / "home", local_root(work / mode / "storage")
        home.mkdir(parents=True)
        shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")  # the instance config `make` installs
        store = Store(root)
        catalogue = load_catalogue(store)
        catalogue.add(region)
        save_catalogue(store, catalogue)
        saved, os.environ["DAGSTER_HOME"] = os.environ.get("DAGSTER_HOME"), str(home)  # the instance yaml reads it
        try:
            with dg.DagsterInstance.from_config(str(home)) as instance:
                register(instance, regions=[REGION])
        finally:
            os.environ.pop("DAGSTER_HOME") if saved is None else os.environ.update(DAGSTER_HOME=saved)
        envs[mode] = {k: v for k, v in os.environ.items() if k not in ("GEO_ASSETS_PROFILE", "GEO_ASSETS_RUNTIME")}
        envs[mode].update(DAGSTER_HOME=str(home), GEO_ASSETS_STORAGE_ROOT=root)
    return envs["runs"], envs["one-process"]


def run_as_runs(url: str, dates_: list[str], tile_size: int) -> dict:
    from devtools.dagster_dev import launch, wait

    ops = {"imagery_tiles": {"config": {"tile_size": tile_size}}}
    start = time.time()
    run_ids = [launch(url, "imagery_job", f"{d}|{REGION}", ops) for d in dates_]
    runs = [wait(url, r, timeout=3600) for r in run_ids]
    bad = [(r, run["status"]) for r, run in zip(run_ids, runs) if run["status"] != "SUCCESS"]
    if bad:
        raise RuntimeError(f"runs failed: {bad}")
    end = max(run["endTime"] for run in runs)
    durations = [run["endTime"] - run["startTime"] for run in runs]
    return {"wall_s": end - start, "run_s_median": statistics.median(durations)}


ONE_PROCESS = """
import json, sys, time
from geo_assets.definitions import defs
from geo_assets.partitions import region_date_key
import dagster as dg
region, tile_size, dates = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
job = defs.resolve_job_def("imagery_job")
with dg.DagsterInstance.get() as instance:
    start = time.perf_counter()
    times = []
    for d in dates:
        t = time.perf_counter()
        result = job.execute_in_process(partition_key=region_date_key(region, d), instance=instance,
                                        run_config={"ops": {"imagery_tiles": {"config": {"tile_size": tile_size}}}})
        assert result.success
        times.append(time.perf_counter() - t)
    print(json.dumps({"wall_s": time.perf_counter() - start, "partition_s": times}))
"""


def run_in_one_process(env: dict, dates_: list[str], tile_size: int) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", ONE_PROCESS, REGION, str(tile_size), *dates_],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=3600,
    )
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"wall_s": out["wall_s"], "run_s_median": statistics.median(out["partition_s"])}


def tiles_of(root: str, date: str) -> list:
    from geo_assets.geo.acquisitions import pick_imagery
    from geo_assets.geo.store import Store

    manifest = pick_imagery(Store(root), REGION, date)[1]
    return [(t["key"], t["digest"]) for t in manifest["tiles"]]


def render(info: dict, args: argparse.Namespace, rows: dict, n_tiles: int, command: str) -> str:
    runs, one = statistics.median(rows["runs"]), statistics.median(rows["one-process"])
    per_runs = [r["run_s_median"] for r in rows["runs_detail"]]
    per_one = [r["run_s_median"] for r in rows["one_detail"]]
    workers = os.environ.get("GEO_ASSETS_WORKERS") or f"{info['os_cpu_count']} (one per core)"
    lines = [
        f"## runs: {args.dates} partitions as runs through the queue against one process",
        "",
        f"A backfill of {args.dates} `imagery_tiles` partitions launched as runs over GraphQL into the queue of "
        "`dagster dev` (the repository's `dagster.yaml`: two runs at a time, the multiprocess executor), against "
        "`execute_in_process` on each partition in a loop in one process that has loaded the code location. "
        "`.venv/bin/python -m bench.runs`.",
        "",
        f"### Results ({info['date']})",
        "",
        f"Machine: {info['nproc']} cores (nproc), {info['cpu_model']}; {info['platform']}. Python {info['python']}, "
        f"dagster {info['dagster']}, torch {info['torch']}. 1-min load average {info['loadavg_1min_at_start']} at the start, "
        f"{info['loadavg_1min_at_end']} at the end (near the core count or above: noisy figures).",
        "",
        f"Command: `{command}`; {args.dates} partitions of `imagery_tiles` (one synthetic region, {args.dates} dates), "
        f"{n_tiles} tiles of {args.tile_size} px each; tile thread pool {workers}; medians of {args.repeats} alternating repeat(s). "
        "Outputs of both modes asserted identical, partition by partition.",
        "",
        "| mode | wall (s) | per partition (s, median) | wall vs one process |",
        "| --- | ---: | ---: | ---: |",
        f"| runs through the queue (2 at a time), multiprocess executor | {runs:.1f} | {statistics.median(per_runs):.1f} (run start to end) | {runs / one:.2f}x |",
        f"| one process, `execute_in_process` in a loop | {one:.1f} | {statistics.median(per_one):.1f} | 1.00x |",
        "",
        f"- Each run costs its own processes (the run worker and the step's process each load the code location) and "
        f"queue and event round trips; at this size that is {statistics.median(per_runs) - statistics.median(per_one):+.1f} s "
        "per partition against the loop, and two runs at a time share the same two cores the loop's tile pool already uses.",
        "- On one machine runs only add that cost: the loop's tile pool already keeps the cores busy. Runs buy "
        "isolation (a failed or lost partition is retried alone), per-partition history in the UI, and spreading "
        "over machines when runs or steps get pods or tasks of their own (GEO_ASSETS_RUNTIME=k8s or ecs).",
    ]
    if args.quick:
        lines.insert(8, "**`--quick`: a check that the benchmark runs, not a figure to quote.**")
        lines.insert(9, "")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.runs", description=__doc__.split("\n\n")[0])
    ap.add_argument("--dates", type=int, default=16, help="partitions (dates of one region); default 16")
    ap.add_argument("--tiles-per-side", type=int, default=4, help="the region is N x N tiles (default 4)")
    ap.add_argument("--tile-size", type=int, default=256, help="tile size in pixels (default 256)")
    ap.add_argument("--repeats", type=int, default=3, help="alternating repeats of both modes (default 3)")
    ap.add_argument(
        "--quick", action="store_true", help="2 x 2 tiles of 64 px, one repeat: checks the benchmark, not a figure"
    )
    ap.add_argument("--no-write", action="store_true", help="print the section instead of writing BENCHMARKS.md")
    args = ap.parse_args(argv)
    for name in ("dates", "tiles_per_side", "tile_size", "repeats"):
        value = getattr(args, name)
        if not 1 <= value <= {"dates": 366, "tiles_per_side": 64, "tile_size": 4096, "repeats": 20}[name]:
            ap.error(f"--{name.replace('_', '-')} out of range: {value}")
    if args.quick:
        args.tiles_per_side, args.tile_size, args.repeats = 2, 64, 1
    command = "python -m bench.runs " + " ".join(argv if argv is not None else sys.argv[1:])

    from devtools.dagster_dev import dagster_dev

    info = machine_info()
    dates_ = dates(args.dates)
    work = Path(tempfile.mkdtemp(prefix="bench-runs-"))
    rows: dict = {"runs": [], "one-process": [], "runs_detail": [], "one_detail": []}
    try:
        runs_env, one_env = prepare(work, args.tiles_per_side, args.tile_size, dates_)
        with dagster_dev(runs_env, work / "dev.log", timeout=300) as url:
            for i in range(args.repeats):
                for mode in ("runs", "one-process") if i % 2 == 0 else ("one-process", "runs"):
                    if mode == "runs":
                        r = run_as_runs(url, dates_, args.tile_size)
                        rows["runs_detail"].append(r)
                    else:
                        r = run_in_one_process(one_env, dates_, args.tile_size)
                        rows["one_detail"].append(r)
                    rows[mode].append(r["wall_s"])
                    print(f"repeat {i + 1} {mode}: {r['wall_s']:.1f} s", flush=True)
                for d in dates_:
                    a, b = (
                        tiles_of(runs_env["GEO_ASSETS_STORAGE_ROOT"], d),
                        tiles_of(one_env["GEO_ASSETS_STORAGE_ROOT"], d),
                    )
                    if a != b:
                        raise AssertionError(f"outputs differ on {d}")
        info["loadavg_1min_at_end"] = round(os.getloadavg()[0], 2)
        section = render(info, args, rows, args.tiles_per_side**2, command)
        print(section)
        if not args.no_write:
            write_section("runs", MEASURES, section)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
