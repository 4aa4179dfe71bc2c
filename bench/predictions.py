"""Benchmark: predicting a region through the platform, a plain loop, and the forward-pass floor.

    .venv/bin/python -m bench.predictions [--sizes 64 256 1024] [--repeats 3] [--quick] [--keep]

For each size N (a tile count: the synthetic region bench-N is sqrt(N) x sqrt(N) tiles of 256x256 px,
4 bands, 10 m, EPSG:32631) it times, alternately:

* platform: `prediction_job` with the asset selection [predictions] for partition `<date>|bench-N`,
  through `execute_in_process` on a persistent SQLite instance in a temporary DAGSTER_HOME, with the
  defaults users get (the default margin, 32 px; runtime auto: ONNX Runtime on the CPU; batch size and
  thread layout measured on the machine, cached after the first run). The timer covers the whole call:
  job subsetting, run creation, resource init, input manifest, version lookup, model load, the pipelined
  tile loop, the mosaic, the output manifest, metadata and every event written to SQLite.
* platform, margin 0: the same with `margin: 0` (tiles alone), the work the plain loop and the floor do.
* plain: the same work without Dagster or the platform's pipeline, with the same parallelism: as many
  plain Python loops as the platform has inference streams, each taking batches of tiles from a shared
  list and doing rasterio read, normalize, ONNX Runtime forward, argmax, write_cog per tile; then the same
  mosaic. Its layout (loops x intra-op threads, batch) is the fastest of a tuning pass on the first size.
* floor: the model's forward passes alone over the same N tiles held in memory (read and normalised
  before the timer), at the fastest (streams x threads, batch) of a tuning pass (bench.floor).

Outputs are asserted identical: every tile the platform wrote at margin 0 equals the plain loop's, pixel
for pixel, and so do the mosaics. The share of pixels equal to torch eager's classes is reported. A 1-tile region
measures the platform's fixed cost per run. Peak RSS is measured apart, after the timed runs: one run
of each mode in a fresh process of its own (so no mode's memory, nor the floor's tiles, counts in
another's). Setup (regions, imagery, a trained model) is not timed and is
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
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import unquote, urlparse

from bench.common import INFERENCE, TILE_IO, machine_info, write_section

# What the figures measure (bench.stale): a change to any of these since the recorded commit makes them stale.
MEASURES = [
    "bench/predictions.py",
    "bench/floor.py",
    *INFERENCE,
    *TILE_IO,
    "geo_assets/geo/tiling.py",
    "geo_assets/assets/predictions.py",
    "geo_assets/assets/common.py",
    "geo_assets/ml/registry.py",
    "geo_assets/config.py",
    "geo_assets/jobs.py",
    "geo_assets/definitions.py",
    "resources/compute.py",
    "resources/storage.py",
    "resources/gate.py",
    "dagster.yaml",
]

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
TUNE_SIZE = 64  # the region the plain loop's and the floor's layouts are tuned on
TARGET_SIZE = 1024
# Like for like (tiles alone) against the plain loop and the floor; throughput on the defaults users get.
TARGETS = {"margin 0 / floor": 1.15, "margin 0 / plain": 1.10, "platform Mpx/s": 1.5}
PLATFORM_MARGINS = {"platform": None, "margin 0": 0}  # None: the config's default margin
TRAINING_SET = {"regions": [TRAIN_REGION], "dates": [DATE]}
TRAINING = {"epochs": 2, "chips_per_epoch": 128}  # the demo's architecture (unet, base 16, depth 3)
QUICK_TRAINING = {"epochs": 1, "chips_per_epoch": 16}


def region_name(n: int) -> str:
    return f"bench-{n}"


# --------------------------------------------------------------------------------------------------
# Environment: must be set before geo_assets.definitions is imported (resources read it at import).


def prepare_environment(work: Path) -> None:
    from geo_assets.geo.store import local_root

    home = work / "dagster_home"
    home.mkdir(parents=True)
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")  # the instance config `make` installs
    (work / "storage").mkdir()
    os.environ["DAGSTER_HOME"] = str(home)
    os.environ["GEO_ASSETS_STORAGE_ROOT"] = local_root(work / "storage")
    os.environ["GEO_ASSETS_PROFILE"] = "local"
    os.environ["GEO_ASSETS_CACHE_DIR"] = str(work / "cache")  # measure the layout here, not from an old cache
    for name in ("GEO_ASSETS_WORKERS", "GEO_ASSETS_INFERENCE_RUNTIME"):
        os.environ.pop(name, None)  # the defaults users get


# --------------------------------------------------------------------------------------------------
# The plain loops: no Dagster, no pipeline, the same libraries and parallelism.


def plain_predict(paths: list[Path], onnx: Path, out_dir: Path, streams: int, threads: int, batch: int) -> dict:
    """`streams` plain loops over shared batches of tile COGs into out_dir/tiles, then the mosaic."""
    import numpy as np
    import onnxruntime as ort
    import rasterio
    import rasterio.transform

    from geo_assets.geo.cog import write_cog
    from geo_assets.geo.landcover import CLASSES, IGNORE
    from geo_assets.geo.mosaic import mosaic
    from geo_assets.ml.normalisation import Normalisation

    # The normalisation the version was trained with, stored beside its weights (model.json).
    normalise = Normalisation.from_record(json.loads((onnx.parent / "model.json").read_text()))
    t0, c0 = time.perf_counter(), time.process_time()
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(onnx), options, providers=["CPUExecutionProvider"])
    t_model = time.perf_counter()
    tiles_dir = out_dir / "tiles"
    tiles_dir.mkdir(parents=True, exist_ok=True)
    batches = [list(range(i, min(i + batch, len(paths)))) for i in range(0, len(paths), batch)]
    written: list = [None] * len(paths)
    counts = np.zeros(len(CLASSES), dtype=np.int64)
    lock = threading.Lock()
    errors: list[BaseException] = []

    def loop() -> None:
        # The GDAL setting the platform's local store reads with (no folder listing per open).
        try:
            with rasterio.Env(GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR"):
                loop_batches()
        except BaseException as exc:  # re-raised on the main thread
            errors.append(exc)

    def loop_batches() -> None:
        nonlocal counts
        while True:
            with lock:
                if not batches:
                    return
                indices = batches.pop(0)
            images, masks, georefs = [], [], []
            for i in indices:
                with rasterio.open(paths[i]) as src:
                    data = src.read()
                    georefs.append((src.crs.to_string(), src.transform))
                    nodata = src.nodata
                    names = list(src.descriptions)
                images.append(normalise(data, names))
                masks.append(np.ones(data.shape[1:], bool) if nodata is None else ~(data == nodata).all(axis=0))
            logits = session.run(["logits"], {"image": np.stack(images)})[0]  # 256 px: no padding needed
            classes = logits.argmax(axis=1).astype(np.uint8)
            classes[~np.stack(masks)] = IGNORE
            for i, tile, (crs, transform) in zip(indices, classes, georefs):
                dst = tiles_dir / paths[i].name
                write_cog(dst, tile, crs, transform, IGNORE, ["class"])
                tile_counts = np.bincount(tile.ravel(), minlength=256)[: len(CLASSES)]
                with lock:
                    counts += tile_counts
                written[i] = (str(dst), rasterio.transform.array_bounds(*tile.shape, transform)[:4], crs)

    workers = [threading.Thread(target=loop) for _ in range(streams)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    if errors:
        raise errors[0]
    t_tiles = time.perf_counter()
    classes_mosaic, transform = mosaic([(p, b) for p, b, _ in written], IGNORE)  # the platform's mosaic
    write_cog(out_dir / "mosaic.tif", classes_mosaic, written[0][2], transform, IGNORE, ["class"], blocksize=512)
    (out_dir / "class_counts.json").write_text(json.dumps(dict(zip(CLASSES, map(int, counts)))))
    t_end = time.perf_counter()
    return {
        "tiles": len(paths),
        "seconds": t_end - t0,
        "cpu_s": time.process_time() - c0,
        "phases": {"model_load": t_model - t0, "tile_loop": t_tiles - t_model, "mosaic": t_end - t_tiles},
        "mosaic_path": str(out_dir / "mosaic.tif"),
        "tiles_dir": str(tiles_dir),
    }


# --------------------------------------------------------------------------------------------------
# The platform run.


def platform_predict(job, instance, region: str, version: str, margin: int | None) -> dict:
    """One run of `predictions`; margin None leaves the config's default (what users get)."""
    import dagster as dg

    from geo_assets.partitions import region_date_key

    config = {"model": MODEL, "version": version} | ({} if margin is None else {"margin": margin})
    run_config = {
        "ops": {"predictions": {"config": config}},
        # Keep the console quiet so the table is readable; every event is still stored in the instance.
        "loggers": {"console": {"config": {"log_level": "WARNING"}}},
    }
    key = region_date_key(region, DATE)
    wall0 = time.time()
    t0, c0 = time.perf_counter(), time.process_time()
    result = job.execute_in_process(
        run_config=run_config,
        instance=instance,
        partition_key=key,
        asset_selection=[dg.AssetKey("predictions")],
        tags={"geo-assets/launched-by": "bench"},
    )
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
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
    manifest = result.output_for_node("predictions")
    return {
        "run_id": result.run_id,
        "seconds": seconds,
        "cpu_s": cpu,
        "tiles": int(meta["tile_count"].value),
        "mosaic_uri": meta["mosaic"].value,
        "inference": meta["inference"].value,
        "margin_px": int(meta["margin_px"].value),
        "digests": {t["key"]: t["digest"] for t in manifest["tiles"]},
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
# The floor: forward passes alone over the same tiles in memory.


def load_tiles(paths: list[Path], normalise):
    """The tiles as the model version reads them: its stored normalisation, bands picked by name."""
    import numpy as np
    import rasterio

    out = []
    for p in paths:
        with rasterio.open(p) as src:
            out.append(normalise(src.read(), list(src.descriptions)))
    return np.stack(out)


def floor_run(onnx: Path, tiles, streams: int, threads: int, batch: int) -> dict:
    from bench.floor import onnxruntime_forwards, run_floor

    r = run_floor(onnxruntime_forwards(onnx)(streams, threads), tiles, streams, batch)
    return {"seconds": r["wall_s"], "cpu_s": r["cpu_ms_per_tile"] * len(tiles) / 1000}


def eager_agreement(weights: Path, tiles, plain_tiles_dir: Path, names: list[str]) -> float:
    """Share of pixels where the runtime's classes (the plain loop's tiles) equal torch eager's."""
    import rasterio

    from geo_assets.ml.export import load_model
    from geo_assets.ml.predict import predict_batch

    model = load_model(weights, "cpu")
    equal = total = 0
    for i in range(0, len(tiles), 8):
        eager = predict_batch(model, tiles[i : i + 8], "cpu")
        for j, name in enumerate(names[i : i + 8]):
            with rasterio.open(plain_tiles_dir / name) as src:
                ours = src.read(1)
            known = ours != 255  # no-data pixels are masked alike in both
            equal += int((ours[known] == eager[j][known]).sum())
            total += int(known.sum())
    return equal / max(total, 1)


# --------------------------------------------------------------------------------------------------
# Peak memory: one run of a mode in a fresh process of its own, after the timed runs.


def peak_rss_child(spec: dict) -> dict:
    """Runs one mode once in this process (started for it alone) and returns its peak RSS."""
    if spec["mode"] in PLATFORM_MARGINS:
        import dagster as dg

        from geo_assets.definitions import defs  # the parent's environment: its instance, store and layout cache

        instance = dg.DagsterInstance.get()
        try:
            res = platform_predict(
                defs.resolve_job_def("prediction_job"),
                instance,
                spec["region"],
                spec["version"],
                PLATFORM_MARGINS[spec["mode"]],
            )
        finally:
            instance.dispose()
    else:
        res = plain_predict(
            [Path(p) for p in spec["paths"]], Path(spec["onnx"]), Path(spec["out_dir"]), *spec["layout"]
        )
    # VmHWM: the high-water mark of this process's memory since it started, imports included. Not
    # ru_maxrss: Linux carries the parent's high-water mark over fork and exec into the child's.
    with open("/proc/self/status") as status:
        hwm_kb = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    return {"tiles": res["tiles"], "peak_rss_mb": hwm_kb / 1024, "layout": res.get("inference", {}).get("how")}


def peak_rss(spec: dict) -> dict:
    """Peak RSS (MB) of one run of spec["mode"] in a fresh process, and how that run got its layout."""
    # The spec on stdin: a region's tile paths outgrow an argument's length limit (128 KiB on Linux).
    proc = subprocess.run(
        [sys.executable, "-m", "bench.predictions", "--peak-rss-child"],
        input=json.dumps(spec),
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"peak RSS run of {spec['mode']} failed:\n{proc.stderr[-4000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["tiles"] == len(spec["paths"]), f"{spec['mode']}: {out['tiles']} tiles, expected {len(spec['paths'])}"
    return out


# --------------------------------------------------------------------------------------------------
# Setup (not timed).


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


def setup(instance, defs, store, sizes: list[int], training: dict, log) -> tuple[str, dict]:
    import dagster as dg

    from geo_assets.cli.commands import register
    from geo_assets.geo.grid import TileGrid
    from geo_assets.geo.regions import Region, load_catalogue, save_catalogue
    from geo_assets.partitions import region_date_key

    catalogue = load_catalogue(store)
    grid = TileGrid(CRS, RESOLUTION, TILE_PX)
    for n in sizes:
        side = math.isqrt(n)
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
        "training_job",
        MODEL,
        {"training_set": {"config": TRAINING_SET}, "trained_model": {"config": training}},
        ["training_set", "trained_model"],
        f"trained_model[{MODEL}]",
    )
    version = result.asset_materializations_for_node("trained_model")[0].metadata["version"].value
    for n in sizes:
        run("imagery_job", region_date_key(region_name(n), DATE), {}, what=f"imagery_tiles[{DATE}|{region_name(n)}]")
    return version, timings


def tune(paths: list[Path], onnx: Path, tiles, work: Path, log) -> dict:
    """The plain loop's and the floor's fastest layouts on the first region: each candidate once."""
    from bench.floor import best_floor, onnxruntime_forwards
    from geo_assets.ml.device import cores
    from geo_assets.ml.layout import thread_splits

    floor, floor_rows = best_floor(onnxruntime_forwards(onnx), tiles, cores(), (1, 2, 4, 8))
    log(
        f"  tune: floor best {floor['streams']} x {floor['threads']}, batch {floor['batch']}: "
        f"{floor['tiles_per_s']:.1f} tiles/s"
    )
    plain_rows = []
    for streams, threads in thread_splits(cores()):
        for batch in (1, 4):
            r = plain_predict(paths, onnx, work / "plain" / "tune", streams, threads, batch)
            plain_rows.append({"streams": streams, "threads": threads, "batch": batch, "seconds": r["seconds"]})
    plain = min(plain_rows, key=lambda r: r["seconds"])
    log(
        f"  tune: plain best {plain['streams']} loops x {plain['threads']} threads, batch {plain['batch']}: "
        f"{plain['seconds']:.2f} s for {len(paths)} tiles"
    )
    return {"floor": floor, "floor_rows": floor_rows, "plain": plain, "plain_rows": plain_rows}


# --------------------------------------------------------------------------------------------------
# Reporting. Modes: "platform" (the defaults users get), "margin 0" (the platform, tiles alone), "plain", "floor".

MODES = ["platform", "margin 0", "plain", "floor"]
RSS_MODES = ["platform", "margin 0", "plain"]


def summarise(n: int, runs: dict[str, list[dict]], rss: dict, agree: float | None) -> dict:
    med = {mode: statistics.median(r["seconds"] for r in rs) for mode, rs in runs.items()}
    cpu = {mode: statistics.median(r["cpu_s"] for r in rs) for mode, rs in runs.items()}
    mpx = n * TILE_PX * TILE_PX / 1e6
    return {
        "tiles": n,
        "region": region_name(n),
        "median_s": med,
        "cpu_s": cpu,
        "margin0_over_floor": med["margin 0"] / med["floor"],
        "margin0_over_plain": med["margin 0"] / med["plain"],
        "platform_over_margin0": med["platform"] / med["margin 0"],
        "mpx_per_s": {mode: mpx / s for mode, s in med.items()},
        "peak_rss_mb": rss,
        "pixels_equal_to_eager": agree,
        "layout": {m: runs[m][-1]["inference"] for m in PLATFORM_MARGINS},
        "margin_px": {m: runs[m][-1]["margin_px"] for m in PLATFORM_MARGINS},
        "phases_median_s": {
            m: {k: statistics.median(r["phases"][k] for r in runs[m]) for k in runs[m][0]["phases"]}
            for m in ("platform", "margin 0", "plain")
        },
        "events_per_run": {m: runs[m][-1]["events"] for m in PLATFORM_MARGINS},
        "runs_s": {mode: [r["seconds"] for r in rs] for mode, rs in runs.items()},
    }


def table(rows: list[dict]) -> str:
    lines = [
        "| tiles | platform s | margin 0 s | plain s | floor s | margin 0 / floor | margin 0 / plain | platform / margin 0 "
        "| platform Mpx/s | margin 0 Mpx/s | plain Mpx/s | floor Mpx/s | CPU s platform / margin 0 / plain / floor "
        "| peak RSS platform / margin 0 / plain MB |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        m, c, x, rss = r["median_s"], r["cpu_s"], r["mpx_per_s"], r["peak_rss_mb"]
        lines.append(
            f"| {r['tiles']} | {m['platform']:.2f} | {m['margin 0']:.2f} | {m['plain']:.2f} | {m['floor']:.2f} "
            f"| **{r['margin0_over_floor']:.3f}** | **{r['margin0_over_plain']:.3f}** | **{r['platform_over_margin0']:.2f}x** "
            f"| **{x['platform']:.2f}** | {x['margin 0']:.2f} | {x['plain']:.2f} | {x['floor']:.2f} "
            f"| {' / '.join(f'{c[k]:.1f}' for k in MODES)} | {' / '.join(f'{rss[k]:.0f}' for k in RSS_MODES)} |"
        )
    return "\n".join(lines)


def breakdown_table(rows: list[dict]) -> str:
    lines = [
        "| tiles | mode | call | before step | step | asset body | step other | after step | events |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        for m in PLATFORM_MARGINS:
            ph = r["phases_median_s"][m]
            lines.append(
                f"| {r['tiles']} | {m} | {r['median_s'][m]:.2f} | {ph['before_step']:.2f} | {ph['step']:.2f} "
                f"| {ph['asset_body']:.2f} | {ph['step_other']:.2f} | {ph['after_step']:.2f} | {r['events_per_run'][m]} |"
            )
        pl = r["phases_median_s"]["plain"]
        lines.append(
            f"| {r['tiles']} | plain | {r['median_s']['plain']:.2f} | | | | model load {pl['model_load']:.2f}, "
            f"tile loop {pl['tile_loop']:.2f}, mosaic {pl['mosaic']:.2f} | | |"
        )
    return "\n".join(lines)


def verdict(rows: list[dict], fixed: dict | None) -> list[str]:
    out = []
    target = next((r for r in rows if r["tiles"] == TARGET_SIZE), None)
    if target is None:
        out.append(
            f"Targets at {TARGET_SIZE} tiles: **not measured in this run** "
            f"(sizes {', '.join(str(r['tiles']) for r in rows)})."
        )
    else:
        got = {
            "margin 0 / floor": target["margin0_over_floor"],
            "margin 0 / plain": target["margin0_over_plain"],
            "platform Mpx/s": target["mpx_per_s"]["platform"],
        }
        for name, bound in TARGETS.items():
            ok = got[name] >= bound if name.endswith("Mpx/s") else got[name] <= bound
            sign = ">=" if name.endswith("Mpx/s") else "<="
            out.append(
                f"Target {name} {sign} {bound} at {TARGET_SIZE} tiles: **{'met' if ok else 'MISSED'}** "
                f"({got[name]:.3f})."
            )
    if fixed is not None:
        out.append(
            f"Fixed cost per platform run (1-tile region): **{fixed['median_s']['platform']:.2f} s** "
            f"(margin 0 {fixed['median_s']['margin 0']:.2f} s, plain {fixed['median_s']['plain']:.2f} s)."
        )
    for r in rows:
        c, n = r["cpu_s"], r["tiles"]
        out.append(
            f"{n} tiles: CPU per tile platform {1000 * c['platform'] / n:.1f} ms, margin 0 {1000 * c['margin 0'] / n:.1f} ms, "
            f"plain {1000 * c['plain'] / n:.1f} ms, forward passes alone {1000 * c['floor'] / n:.1f} ms: reading, decoding, "
            f"encoding and writing the tiles cost about {1000 * (c['plain'] - c['floor']) / n:.1f} ms of CPU per tile on "
            f"top of the forward pass, on the same cores; the default margin adds "
            f"{1000 * (c['platform'] - c['margin 0']) / n:.1f} ms."
            + (
                f" Classes equal to torch eager's on {100 * r['pixels_equal_to_eager']:.3f}% of pixels."
                if r["pixels_equal_to_eager"] is not None
                else ""
            )
        )
    return out


def render_section(
    info: dict, meta: dict, rows: list[dict], fixed: dict | None, tuning: dict, setup_s: dict, rss_notes: list[str]
) -> str:
    layouts, margins = rows[-1]["layout"], rows[-1]["margin_px"]
    plain, floor = tuning["plain"], tuning["floor"]

    def described(m: str) -> str:
        lay = layouts[m]
        return (
            f"{m} (margin {margins[m]} px): runtime **{lay.get('runtime')}**, layout {lay.get('how')}: batch "
            f"{lay.get('batch_size')}, {lay.get('streams')} stream(s) x {lay.get('threads', 'default')} intra-op "
            f"thread(s), {lay.get('io_threads')} I/O threads"
        )

    lines = [
        f"### Results ({info['date']})",
        "",
        f"Machine: {info['nproc']} cores (nproc), {info['cpu_model']}; {info['platform']}. "
        f"Python {info['python']}, torch {info['torch']}, onnxruntime {meta['onnxruntime']}, "
        f"dagster {info['dagster']}, rasterio {info['rasterio']} (GDAL {info['gdal']}). "
        f"1-min load average {info['loadavg_1min_at_start']} at the start, {info['loadavg_1min_at_end']} at the end "
        "(anything near the core count means the wall figures are noisy; CPU seconds much less so).",
        "",
        f"Command: `{meta['command']}`; medians of {meta['repeats']} alternating run(s) per size. "
        + "; ".join(described(m) for m in PLATFORM_MARGINS)
        + f". Plain: {plain['streams']} loop(s) x {plain['threads']} intra-op "
        f"thread(s), batch {plain['batch']}. Floor: {floor['streams']} stream(s) x {floor['threads']} thread(s), "
        f"batch {floor['batch']} (the fastest of each tuning pass on {TUNE_SIZE} tiles). Outputs: every tile and the "
        "mosaic identical between the platform at margin 0 and plain (asserted).",
        "",
        table(rows),
        "",
        "Peak RSS: one run of each mode in a fresh process of its own after the timed runs (VmHWM): the whole "
        "process with its own imports (the platform's dagster, torch and onnxruntime; the plain loop's onnxruntime "
        "and rasterio); no other mode's memory and not the floor's tiles"
        + "".join(f"; {note}" for note in rss_notes)
        + ".",
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
    ap.add_argument("--quick", action="store_true", help="one size of 64 tiles, one run, a model trained less")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory and print its path")
    ap.add_argument("--no-write", action="store_true", help="print the section instead of writing BENCHMARKS.md")
    ap.add_argument("--peak-rss-child", action="store_true", help=argparse.SUPPRESS)  # peak_rss()'s, spec on stdin
    args = ap.parse_args(argv)
    if args.peak_rss_child:
        print(json.dumps(peak_rss_child(json.load(sys.stdin))))
        return 0
    if args.quick:
        args.sizes, args.repeats = [TUNE_SIZE], 1
    if not 1 <= args.repeats <= 50 or any(not 1 <= n <= 4096 for n in args.sizes):
        ap.error("--repeats must be in 1..50 and --sizes in 1..4096")
    for n in args.sizes:
        if math.isqrt(n) ** 2 != n:
            ap.error(f"size {n} is not a square number of tiles")

    def log(msg: str) -> None:
        print(msg, flush=True)

    work = Path(tempfile.mkdtemp(prefix="geo-assets-bench-"))
    prepare_environment(work)
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
    import onnxruntime
    import rasterio

    from geo_assets.definitions import defs  # after prepare_environment: resources read the env at import
    from geo_assets.geo.acquisitions import pick_imagery
    from geo_assets.ml import registry
    from resources.profiles import resource_defs

    store = resource_defs()["storage"].store()
    assert store.base == (work / "storage").resolve(), f"storage root {store.root} is not the benchmark's"
    info = machine_info()
    if info["loadavg_1min_at_start"] > 0.5 * info["nproc"]:
        log(
            f"warning: load average {info['loadavg_1min_at_start']} on {info['nproc']} cores: the machine is busy, "
            "wall times will be noisy"
        )
    log(f"geo-assets predictions benchmark: sizes {args.sizes}, repeats {args.repeats}; work dir {work}")

    nofile = ensure_open_files(max(args.sizes + [TUNE_SIZE]) + 256, log)
    instance = dg.DagsterInstance.get()
    try:
        sizes_all = sorted({FIXED_SIZE, TUNE_SIZE, *args.sizes})
        version, setup_s = setup(instance, defs, store, sizes_all, QUICK_TRAINING if args.quick else TRAINING, log)
        record = registry.resolve_version(store, MODEL, version, 0.0)
        weights = Path(store.path(record["weights"]))
        onnx = weights.with_name(registry.ONNX_FILE)
        normalise = registry.normalisation(record)
        job = defs.resolve_job_def("prediction_job")  # loading the code location is not a per-run cost

        def paths_of(n: int) -> list[Path]:
            manifest = pick_imagery(store, region_name(n), DATE)[1]
            assert len(manifest["tiles"]) == n
            return [Path(store.path(t["path"])) for t in manifest["tiles"]]

        # Warm-up and tuning (untimed): the platform measures its layout (then cached) on its first
        # run of each tile shape (the default margin predicts larger windows: a shape of its own);
        # the plain loop's and the floor's layouts are tuned here.
        for n in (FIXED_SIZE, TUNE_SIZE):
            for margin in PLATFORM_MARGINS.values():
                platform_predict(job, instance, region_name(n), version, margin)
        tuning = tune(paths_of(TUNE_SIZE), onnx, load_tiles(paths_of(TUNE_SIZE), normalise), work, log)
        plain_layout = tuning["plain"]
        floor_layout = tuning["floor"]

        results, rss_notes = {}, []
        for n in sorted({FIXED_SIZE, *args.sizes}):
            paths = paths_of(n)
            tiles = load_tiles(paths, normalise) if n != FIXED_SIZE else None
            out_dir = work / "plain" / region_name(n)
            modes = MODES if tiles is not None else MODES[:-1]
            runs: dict[str, list[dict]] = {mode: [] for mode in modes}
            for r in range(args.repeats):
                for mode in modes[r % len(modes) :] + modes[: r % len(modes)]:  # rotate the order each repeat
                    if mode in PLATFORM_MARGINS:
                        res = platform_predict(job, instance, region_name(n), version, PLATFORM_MARGINS[mode])
                    elif mode == "plain":
                        res = plain_predict(
                            paths,
                            onnx,
                            out_dir,
                            plain_layout["streams"],
                            plain_layout["threads"],
                            plain_layout["batch"],
                        )
                    else:
                        res = floor_run(
                            onnx, tiles, floor_layout["streams"], floor_layout["threads"], floor_layout["batch"]
                        )
                    if mode != "floor":
                        assert res["tiles"] == n, f"{mode} predicted {res['tiles']} tiles, expected {n}"
                    runs[mode].append(res)
                    log(
                        f"  {n:5d} tiles  {mode:8s} run {r + 1}/{args.repeats}: {res['seconds']:.2f} s, "
                        f"{res['cpu_s']:.2f} s CPU (load {os.getloadavg()[0]:.1f})"
                    )
            # Same pixels at margin 0? (not timed)
            platform, plain = runs["margin 0"][-1], runs["plain"][-1]
            with (
                rasterio.open(unquote(urlparse(platform["mosaic_uri"]).path)) as a,
                rasterio.open(plain["mosaic_path"]) as b,
            ):
                same_mosaic = bool(np.array_equal(a.read(), b.read()))
            from geo_assets.geo.tiling import pixel_digest

            different = []
            for p in paths:
                with rasterio.open(Path(plain["tiles_dir"]) / p.name) as src:
                    if pixel_digest(src.read(1)) != platform["digests"][p.stem]:
                        different.append(p.stem)
            if different or not same_mosaic:
                raise AssertionError(
                    f"{n} tiles: platform (margin 0) and plain outputs differ (tiles {different[:5]}, "
                    f"mosaic identical: {same_mosaic})"
                )
            agree = None
            if tiles is not None and (n == max(args.sizes) or args.quick):
                agree = eager_agreement(weights, tiles, Path(plain["tiles_dir"]), [p.name for p in paths])
            if tiles is None:
                runs["floor"] = [{"seconds": float("nan"), "cpu_s": float("nan")}]
            del tiles
            # Peak memory (not timed): each mode once more, in a fresh process of its own.
            rss = {mode: float("nan") for mode in RSS_MODES}
            if n in args.sizes:
                spec = {
                    "region": region_name(n),
                    "version": version,
                    "paths": [str(p) for p in paths],
                    "onnx": str(onnx),
                    "out_dir": str(out_dir),
                    "layout": [plain_layout["streams"], plain_layout["threads"], plain_layout["batch"]],
                }
                for mode in RSS_MODES:
                    out = peak_rss({"mode": mode, **spec})
                    rss[mode] = out["peak_rss_mb"]
                    log(
                        f"  {n:5d} tiles  {mode:8s} peak RSS in a process of its own: {rss[mode]:.0f} MB"
                        + (f" (layout: {out['layout']})" if out["layout"] else "")
                    )
                    if out["layout"] not in (None, "cached"):  # a busy machine's layout is not cached
                        rss_notes.append(
                            f"{n} tiles, {mode}: the layout was measured again in that process "
                            f"({out['layout']}), and its forward passes count in the peak"
                        )
            results[n] = summarise(n, runs, rss, agree)
            s = results[n]
            log(
                f"  {n:5d} tiles: platform {s['median_s']['platform']:.2f} s, margin 0 {s['median_s']['margin 0']:.2f} s, "
                f"plain {s['median_s']['plain']:.2f} s, floor {s['median_s']['floor']:.2f} s; margin 0 / floor "
                f"{s['margin0_over_floor']:.3f}, margin 0 / plain {s['margin0_over_plain']:.3f}; outputs identical"
            )
    finally:
        instance.dispose()
    info["loadavg_1min_at_end"] = round(os.getloadavg()[0], 2)

    fixed = results.get(FIXED_SIZE) if FIXED_SIZE not in args.sizes else None
    rows = [results[n] for n in args.sizes]
    command = "python -m bench.predictions " + (
        "--quick" if args.quick else " ".join(["--sizes", *map(str, args.sizes), "--repeats", str(args.repeats)])
    )
    meta = {"command": command, "repeats": args.repeats, "onnxruntime": onnxruntime.__version__}
    section = render_section(info, meta, rows, fixed, tuning, setup_s, rss_notes)
    print("\n" + section)

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "benchmark": "predictions",
                "machine": info,
                "settings": {
                    **meta,
                    "tile_px": TILE_PX,
                    "bands": 4,
                    "model": MODEL,
                    "model_version": version,
                    "training": QUICK_TRAINING if args.quick else TRAINING,
                    "date": DATE,
                    "targets": TARGETS,
                    "target_size": TARGET_SIZE,
                    "peak_rss": "one run of each mode in a fresh process (VmHWM)",
                },
                "open_files_limit": nofile,
                "setup_seconds": setup_s,
                "tuning": tuning,
                "fixed_cost": fixed,
                "results": rows,
            },
            indent=2,
            default=str,
        )
        + "\n"
    )
    if args.no_write:
        print(f"\nwrote {RESULTS.relative_to(REPO)}")
        return 0
    write_section("predictions", MEASURES, section)
    print(f"\nwrote {RESULTS.relative_to(REPO)} and {DOC.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
