"""Benchmark: predicting a region through the platform versus a plain Python loop.

    .venv/bin/python -m bench.predictions [--sizes 64 256 1024] [--repeats 3] [--workers N] [--keep]

For each size N (a tile count: the synthetic region bench-N is sqrt(N) x sqrt(N) tiles of 256x256 px,
4 bands, 10 m, EPSG:32631) it times, alternately:

* platform: `prediction_job` with the asset selection [predictions] for partition `<date>|bench-N`,
  through `execute_in_process` on a persistent SQLite instance in a temporary DAGSTER_HOME. The timer
  covers the whole call: job subsetting, run creation, resource init, input load through the manifest
  IO manager, model load, tile reads/inference/writes via the compute resource, the mosaic, the output
  manifest, metadata and every event written to SQLite. Tile reads and writes use the default compute
  resource: a thread pool with one worker per core (what users get).
* plain: one single-threaded Python loop without Dagster doing the same work with the same libraries:
  rasterio reads of the same tile COGs, the model's stored normalisation, the same exported model (load_model), predict_batch in
  batches of the same size, write_cog per tile into a separate directory, then the mosaic pasted tile by tile
  (geo_assets.geo.mosaic) + write_cog. (torch uses its default intra-op threads in both.)

A 1-tile region (bench-1) is timed the same way to measure the platform's fixed per-run cost.
Setup (regions, imagery, a small trained model) happens in a temporary directory, is not timed and is
removed at the end (unless --keep). Results go to bench/results/predictions.json and to the section
between the predictions markers in BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import unquote, urlparse

from bench.common import machine_info, peak_mb, reset_peak, write_section

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results" / "predictions.json"
DOC = REPO / "BENCHMARKS.md"

DATE = "2024-06-01"
MODEL = "bench-unet"
TRAIN_REGION = "synth-train-a"
CRS = "EPSG:32631"
TILE_PX = 256
RESOLUTION = 10.0
GROUND = TILE_PX * RESOLUTION  # 2560 m: the grid's tile edges fall on multiples of this
ORIGIN = (196 * GROUND, 2000 * GROUND)  # (501760, 5120000): on the grid, north of the built-in regions
FIXED_SIZE = 1  # the 1-tile region that measures the per-run fixed cost
TARGET = 1.10
TARGET_SIZE = 1024
TRAINING = {"regions": [TRAIN_REGION], "dates": [DATE], "epochs": 1, "chips_per_epoch": 16}


def region_name(n: int) -> str:
    return f"bench-{n}"


# --------------------------------------------------------------------------------------------------
# Environment: must be set before geo_assets.definitions is imported (resources read it at import).


def prepare_environment(work: Path, workers: int | None) -> None:
    from geo_assets.geo.store import local_root

    home = work / "dagster_home"
    home.mkdir(parents=True)
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")  # the instance config `make` installs
    (work / "storage").mkdir()
    os.environ["DAGSTER_HOME"] = str(home)
    os.environ["GEO_ASSETS_STORAGE_ROOT"] = local_root(work / "storage")
    os.environ["GEO_ASSETS_PROFILE"] = "local"
    if workers is None:
        os.environ.pop("GEO_ASSETS_WORKERS", None)  # the default: one worker per core
    else:
        os.environ["GEO_ASSETS_WORKERS"] = str(workers)


# --------------------------------------------------------------------------------------------------
# Memory: peak RSS of one run. /proc/self/clear_refs "5" resets VmHWM (Linux >= 4.0); getrusage's
# ru_maxrss cannot be reset (and keeps the maximum of exited threads), so it is only the fallback.


# --------------------------------------------------------------------------------------------------
# The plain loop: no Dagster, no thread pool, the same libraries.


def plain_predict(image_dir: Path, weights: Path, out_dir: Path, batch_size: int) -> dict:
    """Predict every tile COG in image_dir into out_dir/tiles, then the mosaic. Returns phase seconds."""
    import numpy as np
    import rasterio
    import torch
    import rasterio.transform

    from geo_assets.geo.cog import write_cog
    from geo_assets.geo.mosaic import mosaic
    from geo_assets.geo.landcover import CLASSES, IGNORE
    from geo_assets.ml.data import Normalisation
    from geo_assets.ml.predict import load_model, predict_batch

    t0 = time.perf_counter()
    # The normalisation the version was trained with, stored beside its weights.
    normalise = Normalisation.from_record(json.loads((Path(weights).parent / "model.json").read_text()))
    paths = sorted(p for p in image_dir.glob("*.tif") if not p.name.endswith(".cloud.tif"))
    device = torch.device("cpu")
    model = load_model(weights, device)
    t_model = time.perf_counter()
    tiles_dir = out_dir / "tiles"
    tiles_dir.mkdir(parents=True, exist_ok=True)
    counts = np.zeros(len(CLASSES), dtype=np.int64)
    written = []
    for start in range(0, len(paths), batch_size):
        batch = paths[start : start + batch_size]
        images, masks, georefs = [], [], []
        for path in batch:
            with rasterio.open(path) as src:
                data = src.read()
                georefs.append((src.crs.to_string(), src.transform))
                nodata = src.nodata
                names = list(src.descriptions)
            images.append(normalise(data, names))
            if nodata is None:
                masks.append(np.ones(data.shape[1:], dtype=bool))
            elif math.isnan(nodata):
                masks.append(~np.isnan(data).any(axis=0))
            else:
                masks.append(~(data == nodata).all(axis=0))
        classes = predict_batch(model, np.stack(images), device, valid=np.stack(masks))
        for path, tile, (crs, transform) in zip(batch, classes, georefs):
            dst = tiles_dir / path.name
            write_cog(dst, tile, crs, transform, IGNORE, ["class"])
            counts += np.bincount(tile.ravel(), minlength=256)[: len(CLASSES)]
            h, w = tile.shape
            written.append((str(dst), rasterio.transform.array_bounds(h, w, transform)[:4]))
    t_tiles = time.perf_counter()
    classes_mosaic, transform = mosaic(written, IGNORE)  # the same one-file-at-a-time paste as the platform
    write_cog(out_dir / "mosaic.tif", classes_mosaic, crs, transform, IGNORE, ["class"], blocksize=512)
    (out_dir / "class_counts.json").write_text(json.dumps(dict(zip(CLASSES, map(int, counts)))))
    t_end = time.perf_counter()
    return {
        "tiles": len(written),
        "model_load": t_model - t0,
        "tile_loop": t_tiles - t_model,
        "mosaic": t_end - t_tiles,
        "mosaic_path": str(out_dir / "mosaic.tif"),
    }


# --------------------------------------------------------------------------------------------------
# The platform run.


def platform_predict(job, instance, region: str, version: str, batch_size: int) -> dict:
    import dagster as dg

    from geo_assets.partitions import region_date_key

    run_config = {
        "ops": {"predictions": {"config": {"model": MODEL, "version": version, "batch_size": batch_size}}},
        # Keep the console quiet so the table is readable; every event is still stored in the instance.
        "loggers": {"console": {"config": {"log_level": "WARNING"}}},
    }
    key = region_date_key(region, DATE)
    wall0 = time.time()
    t0 = time.perf_counter()
    result = job.execute_in_process(
        run_config=run_config,
        instance=instance,
        partition_key=key,
        asset_selection=[dg.AssetKey("predictions")],
        tags={"geo-assets/launched-by": "bench"},
    )
    seconds = time.perf_counter() - t0
    wall1 = wall0 + seconds
    # Everything below is bookkeeping outside the timer.
    if not result.success:
        raise RuntimeError(f"platform run {result.run_id} failed")
    [mat] = result.asset_materializations_for_node("predictions")
    meta = mat.metadata
    [step] = [s for s in instance.get_run_step_stats(result.run_id) if s.step_key == "predictions"]
    logs = instance.all_logs(result.run_id)
    stamps = {}
    for entry in logs:
        if entry.dagster_event is not None:
            stamps.setdefault(entry.dagster_event.event_type_value, entry.timestamp)
    step_start = stamps.get("STEP_START", step.start_time)
    step_end = stamps.get("STEP_SUCCESS", step.end_time)
    body = float(meta["seconds"].value)  # the asset's own timer: tile loop + mosaic + class counts
    step_seconds = (step.end_time or 0) - (step.start_time or 0)
    return {
        "run_id": result.run_id,
        "seconds": seconds,
        "tiles": int(meta["tile_count"].value),
        "mosaic_uri": meta["mosaic"].value,
        "events": len(logs),
        "phases": {
            "before_step": step_start - wall0,  # subsetting, run record, plan, resource init, run events
            "step": step_seconds,  # from instance.get_run_step_stats
            "asset_body": body,  # predict_tiles + write_mosaic, as the asset reports it
            "step_other": step_seconds - body,  # input load, version lookup, run tags, model load, output
            "after_step": wall1 - step_end,  # run success events, teardown
        },
    }


# --------------------------------------------------------------------------------------------------
# Setup (not timed).


def warm_up_shapes(weights: Path, bands: int, batch_size: int, sizes: list[int]) -> None:
    """One forward pass per batch shape the runs will see: oneDNN caches kernels per shape, per process,
    so otherwise the first timed run of a size (the platform's, at repeat 1) would pay for it alone."""
    import numpy as np

    from geo_assets.ml.predict import load_model, predict_batch

    model = load_model(weights, "cpu")
    shapes = {min(batch_size, n) for n in sizes} | {n % batch_size for n in sizes if n % batch_size}
    for b in sorted(shapes):
        predict_batch(model, np.zeros((b, bands, TILE_PX, TILE_PX), np.float32), "cpu")


def ensure_open_files(needed: int, log) -> dict:
    """The mosaic (platform and plain alike) opens every tile at once: make sure the soft limit allows it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    info = {"soft": soft, "hard": hard, "raised_to": None}
    if soft != resource.RLIM_INFINITY and soft < needed:
        new = needed if hard == resource.RLIM_INFINITY else min(hard, needed)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
        info["raised_to"] = new
        log(f"note: open-file limit {soft} is too low for the mosaic of {needed - 256} tiles; raised to {new}")
    return info


def setup(instance, defs, store, sizes: list[int], log) -> tuple[str, dict]:
    import dagster as dg

    from geo_assets.cli import register
    from geo_assets.geo.grid import TileGrid
    from geo_assets.geo.regions import Region, load_catalogue, save_catalogue
    from geo_assets.partitions import region_date_key

    catalogue = load_catalogue(store)
    grid = TileGrid(CRS, RESOLUTION, TILE_PX)
    for n in sizes:
        side = math.isqrt(n)
        assert side * side == n, f"size {n} is not a square number of tiles"
        bbox = (ORIGIN[0], ORIGIN[1], ORIGIN[0] + side * GROUND, ORIGIN[1] + side * GROUND)
        tiles = grid.tiles(bbox)
        assert len(tiles) == n, f"region {region_name(n)}: grid yields {len(tiles)} tiles, expected {n}"
        catalogue.add(Region(region_name(n), bbox, CRS, "synthetic", None, (DATE,)), replace=True)
    save_catalogue(store, catalogue)
    register(instance, regions=[TRAIN_REGION] + [region_name(n) for n in sizes], models=[MODEL])

    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    timings = {}

    def run(job: str, key, ops: dict, assets: list[str] | None = None, what: str = "") -> object:
        t0 = time.perf_counter()
        result = defs.resolve_job_def(job).execute_in_process(
            run_config={"ops": ops, **quiet},
            instance=instance,
            partition_key=key,
            asset_selection=[dg.AssetKey(a) for a in assets] if assets else None,
            tags={"geo-assets/launched-by": "bench-setup"},
        )
        timings[what] = round(time.perf_counter() - t0, 2)
        log(f"  setup: {what} in {timings[what]:.1f} s")
        return result

    run("labels_job", TRAIN_REGION, {}, what=f"labels[{TRAIN_REGION}]")
    run("imagery_job", region_date_key(TRAIN_REGION, DATE), {}, what=f"imagery_tiles[{DATE}|{TRAIN_REGION}]")
    result = run(
        "training_job", MODEL, {"trained_model": {"config": TRAINING}}, ["trained_model"], f"trained_model[{MODEL}]"
    )
    version = result.asset_materializations_for_node("trained_model")[0].metadata["version"].value
    for n in sizes:
        run("imagery_job", region_date_key(region_name(n), DATE), {}, what=f"imagery_tiles[{DATE}|{region_name(n)}]")
    return version, timings


# --------------------------------------------------------------------------------------------------
# Reporting.


def summarise(n: int, platform_runs: list[dict], plain_runs: list[dict], rss: dict, identical: bool | None) -> dict:
    p = statistics.median(r["seconds"] for r in platform_runs)
    q = statistics.median(r["seconds"] for r in plain_runs)
    mpx = n * TILE_PX * TILE_PX / 1e6
    med = lambda runs, k: statistics.median(r[k] for r in runs)  # noqa: E731
    return {
        "tiles": n,
        "region": region_name(n),
        "platform_median_s": p,
        "plain_median_s": q,
        "ratio": p / q,
        "platform_tiles_per_s": n / p,
        "plain_tiles_per_s": n / q,
        "platform_mpx_per_s": mpx / p,
        "plain_mpx_per_s": mpx / q,
        "platform_peak_rss_mb": rss["platform"],
        "plain_peak_rss_mb": rss["plain"],
        "outputs_identical": identical,
        "platform_phases_median_s": {k: statistics.median(r["phases"][k] for r in platform_runs) for k in platform_runs[0]["phases"]},
        "platform_events_per_run": platform_runs[0]["events"],
        "plain_phases_median_s": {k: med(plain_runs, k) for k in ("model_load", "tile_loop", "mosaic")},
        "platform_runs_s": [r["seconds"] for r in platform_runs],
        "plain_runs_s": [r["seconds"] for r in plain_runs],
    }


def table(rows: list[dict]) -> str:
    head = (
        "| tiles | platform s | plain s | ratio | platform tiles/s | plain tiles/s | platform Mpx/s | plain Mpx/s "
        "| peak RSS platform / plain MB |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    )
    lines = [head]
    for r in rows:
        lines.append(
            f"| {r['tiles']} | {r['platform_median_s']:.2f} | {r['plain_median_s']:.2f} | **{r['ratio']:.3f}** "
            f"| {r['platform_tiles_per_s']:.1f} | {r['plain_tiles_per_s']:.1f} | {r['platform_mpx_per_s']:.2f} "
            f"| {r['plain_mpx_per_s']:.2f} | {r['platform_peak_rss_mb']:.0f} / {r['plain_peak_rss_mb']:.0f} |"
        )
    return "\n".join(lines)


def breakdown_table(rows: list[dict]) -> str:
    head = (
        "| tiles | platform call | before step | step | asset body | step other | after step | events "
        "| plain total | plain model load | plain tile loop | plain mosaic |\n"
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    )
    lines = [head]
    for r in rows:
        ph, pl = r["platform_phases_median_s"], r["plain_phases_median_s"]
        lines.append(
            f"| {r['tiles']} | {r['platform_median_s']:.2f} | {ph['before_step']:.2f} | {ph['step']:.2f} "
            f"| {ph['asset_body']:.2f} | {ph['step_other']:.2f} | {ph['after_step']:.2f} | {r['platform_events_per_run']} "
            f"| {r['plain_median_s']:.2f} | {pl['model_load']:.2f} | {pl['tile_loop']:.2f} | {pl['mosaic']:.2f} |"
        )
    return "\n".join(lines)


def verdict(rows: list[dict], fixed: dict | None) -> list[str]:
    out = []
    target = next((r for r in rows if r["tiles"] == TARGET_SIZE), None)
    if target is None:
        out.append(
            f"Target (ratio <= {TARGET:.2f} at {TARGET_SIZE} tiles): **not measured in this run** "
            f"(sizes {', '.join(str(r['tiles']) for r in rows)})."
        )
    else:
        ok = target["ratio"] <= TARGET
        out.append(
            f"Target (ratio <= {TARGET:.2f} at {TARGET_SIZE} tiles): **{'met' if ok else 'MISSED'}** "
            f"({target['ratio']:.3f})."
        )
    if fixed is not None:
        out.append(
            f"Fixed cost per platform run (1-tile region, median platform - plain): "
            f"**{fixed['platform_median_s'] - fixed['plain_median_s']:.2f} s** "
            f"({fixed['platform_median_s']:.2f} s vs {fixed['plain_median_s']:.2f} s; "
            f"before step {fixed['platform_phases_median_s']['before_step']:.2f} s, "
            f"step other {fixed['platform_phases_median_s']['step_other']:.2f} s, "
            f"after step {fixed['platform_phases_median_s']['after_step']:.2f} s)."
        )
    for r in rows:
        ph, pl = r["platform_phases_median_s"], r["plain_phases_median_s"]
        outside = ph["before_step"] + ph["after_step"]
        out.append(
            f"{r['tiles']} tiles: platform - plain = {r['platform_median_s'] - r['plain_median_s']:+.2f} s; "
            f"outside the step {outside:.2f} s, in the step around the asset body {ph['step_other']:.2f} s "
            f"(plain model load {pl['model_load']:.2f} s), asset body {ph['asset_body']:.2f} s vs plain "
            f"tile loop + mosaic {pl['tile_loop'] + pl['mosaic']:.2f} s."
        )
    return out


def render_section(info: dict, args: dict, rows: list[dict], fixed: dict | None, setup_s: dict, rss_method: str) -> str:
    workers = args["workers"] or info["os_cpu_count"]
    lines = [
        f"### Results ({info['date']})",
        "",
        f"Machine: {info['nproc']} cores (nproc), {info['cpu_model']}; {info['platform']}. "
        f"Python {info['python']}, torch {info['torch']} ({info['torch_threads']} intra-op threads), "
        f"dagster {info['dagster']}, rasterio {info['rasterio']} (GDAL {info['gdal']}). "
        f"1-min load average {info['loadavg_1min_at_start']} at the start, {info['loadavg_1min_at_end']} at the end "
        "(anything near the core count means the figures are noisy).",
        "",
        f"Command: `{args['command']}`; batch size {args['batch_size']}; medians of {args['repeats']} alternating "
        f"run(s) per size. Platform: compute thread pool of **{workers} worker(s)**"
        f"{' (default: one per core)' if args['workers'] is None else ''}; plain loop: **single-threaded**.",
        "",
        table(rows),
        "",
        f"Peak RSS: {rss_method}.",
        "",
        "Where the platform's time goes (median seconds). *before step*: from the call to STEP_START (job subset, "
        "run record, plan, resources, run events); *step*: step duration from `get_run_step_stats`; *asset body*: "
        "the asset's own timer (tile loop + mosaic); *step other*: step minus body (input manifest, version "
        "lookup, run tags, model load, output manifest, metadata); *after step*: STEP_SUCCESS to the call's "
        "return; *events*: event-log records of the run.",
        "",
        breakdown_table(([fixed] if fixed else []) + rows),
        "",
        *[f"- {v}" for v in verdict(rows, fixed)],
        "",
        "Setup (not timed), seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in setup_s.items()) + ".",
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.predictions", description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 256, 1024], help="tile counts (square numbers)")
    ap.add_argument("--repeats", type=int, default=3, help="alternating runs per size and mode (default 3)")
    ap.add_argument("--batch-size", type=int, default=None, help="inference batch size (default: the asset's default)")
    ap.add_argument("--workers", type=int, default=None, help="compute thread pool size (default: one per core)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory and print its path")
    args = ap.parse_args(argv)
    if args.repeats < 1 or any(n < 1 for n in args.sizes):
        ap.error("--repeats and --sizes must be >= 1")
    for n in args.sizes:
        if math.isqrt(n) ** 2 != n:
            ap.error(f"size {n} is not a square number of tiles")

    def log(msg: str) -> None:
        print(msg, flush=True)

    work = Path(tempfile.mkdtemp(prefix="geo-assets-bench-"))
    prepare_environment(work, args.workers)
    try:
        return run(args, work, log)
    finally:
        if args.keep:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def run(args, work: Path, log) -> int:
    import dagster as dg
    import numpy as np
    import rasterio

    from geo_assets.config import PredictionConfig
    from geo_assets.definitions import defs  # after prepare_environment: resources read the env at import
    from geo_assets.ml import registry
    from resources.profiles import resource_defs
    from resources.storage import dims_path, manifest_key

    batch_size = args.batch_size or PredictionConfig.model_fields["batch_size"].default
    resources = resource_defs()  # what definitions.py was built from, read from the same environment
    store = resources["storage"].store()
    assert store.base == (work / "storage").resolve(), f"storage root {store.root} is not the benchmark's"
    workers = resources["compute"].workers or os.cpu_count()
    info = machine_info()
    if info["loadavg_1min_at_start"] > 0.5 * info["nproc"]:
        log(f"warning: load average {info['loadavg_1min_at_start']} on {info['nproc']} cores: the machine is busy, "
            "timings will be noisy")
    log(
        f"geo-assets predictions benchmark: sizes {args.sizes}, repeats {args.repeats}, batch {batch_size}; "
        f"platform compute pool {workers} worker(s), plain loop single-threaded; work dir {work}"
    )

    nofile = ensure_open_files(max(args.sizes) + 256, log)
    instance = dg.DagsterInstance.get()
    try:
        sizes_all = [FIXED_SIZE] + [n for n in args.sizes if n != FIXED_SIZE]
        version, setup_s = setup(instance, defs, store, sizes_all, log)
        record = registry.resolve_version(store, MODEL, version)
        weights = Path(store.path(record["weights"]))
        job = defs.resolve_job_def("prediction_job")  # loading the code location is not a per-run cost

        reset_ok = reset_peak()
        rss_method = (
            "VmHWM reset before each run (/proc/self/clear_refs), max over runs; the whole process, "
            "torch and dagster imports included"
            if reset_ok
            else "process high-water mark (getrusage ru_maxrss) after each mode's runs; monotonic, so an upper bound"
        )

        # Warm-up (one of each on the 1-tile region, untimed): lazy imports, torch kernels, file cache.
        fixed_region = region_name(FIXED_SIZE)
        fixed_images = Path(store.path(store.read_json(
            manifest_key("imagery_tiles", dims_path({"region": fixed_region, "date": DATE}))
        )["prefix"]))
        platform_predict(job, instance, fixed_region, version, batch_size)
        plain_predict(fixed_images, weights, work / "plain" / "warmup", batch_size)
        warm_up_shapes(weights, len(record["bands"]), batch_size, sizes_all)

        results = {}
        for n in sizes_all:
            region = region_name(n)
            manifest = store.read_json(manifest_key("imagery_tiles", dims_path({"region": region, "date": DATE})))
            image_dir = Path(store.path(manifest["prefix"]))
            assert len(manifest["tiles"]) == n
            out_dir = work / "plain" / region
            platform_runs, plain_runs = [], []
            rss = {"platform": 0.0, "plain": 0.0}
            for r in range(args.repeats):
                order = ("platform", "plain") if r % 2 == 0 else ("plain", "platform")
                for mode in order:
                    reset_peak()
                    if mode == "platform":
                        res = platform_predict(job, instance, region, version, batch_size)
                        assert res["tiles"] == n, f"platform predicted {res['tiles']} tiles, expected {n}"
                        platform_runs.append(res)
                    else:
                        res = plain_predict(image_dir, weights, out_dir, batch_size)
                        res["seconds"] = res["model_load"] + res["tile_loop"] + res["mosaic"]
                        assert res["tiles"] == n, f"plain loop predicted {res['tiles']} tiles, expected {n}"
                        plain_runs.append(res)
                    rss[mode] = max(rss[mode], peak_mb(reset_ok))
                    log(f"  {n:5d} tiles  {mode:8s} run {r + 1}/{args.repeats}: {res['seconds']:.2f} s")
            # Same pixels? (not timed)
            with rasterio.open(unquote(urlparse(platform_runs[-1]["mosaic_uri"]).path)) as a, rasterio.open(
                plain_runs[-1]["mosaic_path"]
            ) as b:
                identical = bool(np.array_equal(a.read(), b.read()))
            results[n] = summarise(n, platform_runs, plain_runs, rss, identical)
            s = results[n]
            log(
                f"  {n:5d} tiles: platform {s['platform_median_s']:.2f} s, plain {s['plain_median_s']:.2f} s, "
                f"ratio {s['ratio']:.3f}, mosaics identical: {identical}"
            )
    finally:
        instance.dispose()
    info["loadavg_1min_at_end"] = round(os.getloadavg()[0], 2)

    fixed = results.get(FIXED_SIZE) if FIXED_SIZE not in args.sizes else None
    rows = [results[n] for n in args.sizes]
    command = "python -m bench.predictions " + " ".join(
        ["--sizes", *map(str, args.sizes), "--repeats", str(args.repeats)]
        + (["--batch-size", str(args.batch_size)] if args.batch_size else [])
        + (["--workers", str(args.workers)] if args.workers is not None else [])
    )
    meta = {"command": command, "repeats": args.repeats, "batch_size": batch_size, "workers": args.workers}

    print()
    print(
        f"predictions: platform (execute_in_process, compute pool of {workers} worker(s)) vs plain loop "
        f"(single-threaded, no Dagster); median wall seconds of {args.repeats} run(s)"
    )
    print(table(rows))
    print()
    print("platform breakdown (median s):")
    print(breakdown_table(([fixed] if fixed else []) + rows))
    print()
    for v in verdict(rows, fixed):
        print("- " + v.replace("**", ""))

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "benchmark": "predictions",
                "machine": info,
                "settings": {**meta, "workers_effective": workers, "tile_px": TILE_PX, "bands": 4, "model": MODEL,
                             "model_version": version, "training": TRAINING, "date": DATE, "target": TARGET,
                             "target_size": TARGET_SIZE, "peak_rss": rss_method},
                "open_files_limit": nofile,
                "setup_seconds": setup_s,
                "fixed_cost": fixed,
                "results": rows,
            },
            indent=2,
        )
        + "\n"
    )
    write_section("predictions", render_section(info, meta, rows, fixed, setup_s, rss_method))
    print(f"\nwrote {RESULTS.relative_to(REPO)} and {DOC.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
