"""Benchmark: peak memory of training and evaluation at 1x and 4x the demo's set (evaluation also at 16x).

    .venv/bin/python -m bench.training_memory [--quick] [--no-doc]

1x is the demo's sets: training on synth-train-a (2 dates) and synth-train-b (1 date), evaluation on
synth-holdout (1 date), 6 bands, tiles of 256 px (16 a date). 4x holds four times the dates of the same
synthetic regions (12 training acquisitions, 4 evaluation ones): the same regions, the same tiles per
date, four times the tiles. Evaluation runs at 16x too (16 dates): the 1x set is one batch of
EvaluationConfig's 16 tiles, so only from 4x on does a batch get read ahead while another is predicted,
and 16x against 4x shows what, if anything, grows with the tiles themselves. Imagery and labels are cut
into a temporary store by the tile functions the imagery and labels assets run.

Each phase runs in a fresh process (`--phase`), through the functions a step calls: training is
`ml.versions.train_version` with the training defaults users get (TrainingConfig), evaluation is
`ml.evaluation.evaluate` of the 1x version with EvaluationConfig's batch size, both over the compute
resource's default pool (LocalPoolCompute().map). Peak RSS: the process's VmHWM after the phase, with
the peak reset after imports (torch, GDAL) where Linux allows; baseline: RSS before the phase. The
settings of every scale are asserted equal; only the set differs. Target: 4x peak within 1.2x of 1x,
for training and for evaluation, and evaluation's 16x within 1.2x of its 4x; the command exits 1
(after writing its figures) where a target is not met.
Results go to bench/results/training_memory.json and the "training-memory" section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import REPO, machine_info, peak_mb, reset_peak, write_section

RESULTS = REPO / "bench" / "results" / "training_memory.json"
TILE_PX = 256
TRAIN = {"synth-train-a": 2, "synth-train-b": 1}  # the demo's training dates per region
HOLDOUT = {"synth-holdout": 1}
TARGET = 1.2
SCALES = {"training": (1, 4), "evaluation": (1, 4, 16)}
# (phase, larger scale, smaller scale) whose peaks must be within TARGET of each other
TARGETS = [("training", 4, 1), ("evaluation", 4, 1), ("evaluation", 16, 4)]
# What the figures measure: bench.stale lists this section when any of it changes.
MEASURES = [
    "bench/training_memory.py",
    "geo_assets/ml/versions.py",
    "geo_assets/ml/train.py",
    "geo_assets/ml/data.py",
    "geo_assets/ml/pairs.py",
    "geo_assets/ml/evaluation.py",
    "geo_assets/ml/normalisation.py",
    "geo_assets/ml/memory.py",
    "geo_assets/ml/models.py",
    "geo_assets/ml/export.py",
    "geo_assets/ml/predict.py",
    "geo_assets/engine/threads.py",
    "geo_assets/geo/store.py",
    "geo_assets/geo/cog.py",
    "resources/compute.py",
]


def dates(count: int) -> list[str]:
    """`count` dates, the demo's first (2024-06-01) then the first of each following month."""
    return [f"{2024 + (5 + i) // 12}-{(5 + i) % 12 + 1:02d}-01" for i in range(count)]


def cut_set(store, regions: dict[str, int], scale: int) -> dict:
    """A set manifest as the training_set / evaluation_set assets write it, `scale` x each region's dates."""
    from geo_assets.cli.demo import ALL_BANDS
    from geo_assets.geo.regions import builtin_regions
    from geo_assets.geo.sources import get_source
    from geo_assets.geo.tiling import cut_imagery_tile, cut_label_tile

    source, items = get_source("synthetic"), []
    for name, count in regions.items():
        region = builtin_regions()[name]
        spec = source.spec(region)
        grid = spec.grid(region.crs, TILE_PX)
        tiles = grid.tiles(region.bbox)
        fields = {"crs": region.crs, "resolution": spec.resolution, "origin": list(grid.origin), "tile_size": TILE_PX}
        labels_key = f"manifests/labels/{name}.json"
        if not store.exists(labels_key):
            entries = [cut_label_tile(store, region, "synthetic", spec.resolution, f"labels/{name}", t) for t in tiles]
            store.write_json(labels_key, {"region": name, **fields, "tiles": entries})
        for date in dates(count * scale):
            key = f"manifests/imagery/{name}/{date}.json"
            if not store.exists(key):
                scene = source.scene(region, date, bands=ALL_BANDS)
                entries = [cut_imagery_tile(store, scene, ALL_BANDS, f"imagery/{name}/{date}", t) for t in tiles]
                store.write_json(
                    key, {"region": name, "date": date, "bands": ALL_BANDS, **fields, "nodata": 0.0, "tiles": entries}
                )
            items.append(
                {
                    "region": name,
                    "date": date,
                    "bands": ALL_BANDS,
                    "tiles": len(tiles),
                    "imagery": key,
                    "imagery_version": f"{name}/{date}",
                    "labels": labels_key,
                    "labels_version": name,
                    "footprint": {"crs": region.crs, "bbox": list(region.bbox)},
                }
            )
    return {"regions": list(regions), "dates": [], "bands": ALL_BANDS, "items": items}


def training_settings(quick: bool) -> dict:
    from geo_assets.config import TrainingConfig

    settings = {**TrainingConfig().model_dump(), "device": "cpu"}
    return {**settings, "epochs": 1, "chips_per_epoch": 32} if quick else settings


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def phase(args) -> dict:
    """One phase in this (fresh) process: its peak RSS and what it ran with."""
    import torch

    from geo_assets.config import EvaluationConfig
    from geo_assets.geo.store import Store, local_root
    from geo_assets.ml.evaluation import evaluate
    from geo_assets.ml.memory import evaluation_bytes, training_bytes
    from geo_assets.ml.pairs import SetTiles
    from geo_assets.ml.versions import TrainingRequest, train_version
    from resources.compute import LocalPoolCompute

    store = Store(local_root(args.store))
    manifest = store.read_json(f"sets/{args.phase}-{args.scale}x.json")
    tiles, bands = len(SetTiles.of(store, manifest)), len(manifest["bands"])
    mapper = LocalPoolCompute().map
    baseline = rss_mb()
    reset_ok = reset_peak()
    start = time.perf_counter()
    if args.phase == "training":
        settings = training_settings(args.quick)
        record = train_version(
            store, TrainingRequest(f"bench-{args.scale}x", settings, manifest), mapper, lambda _: None
        ).record
        if args.scale == 1:
            store.write_json("sets/version.json", record)
        bound = training_bytes(settings["batch_size"], settings["chip_size"], TILE_PX, bands)
    else:
        settings = {
            "batch_size": EvaluationConfig().batch_size,
            "device": "cpu",
            "version": store.read_json("sets/version.json")["version"],
        }
        evaluate(
            store, store.read_json("sets/version.json"), manifest, mapper, torch.device("cpu"), settings["batch_size"]
        )
        bound = evaluation_bytes(settings["batch_size"], TILE_PX, bands)
    return {
        "phase": args.phase,
        "scale": args.scale,
        "tiles": tiles,
        "settings": settings,
        "seconds": time.perf_counter() - start,
        "baseline_mb": baseline,
        "peak_mb": peak_mb(reset_ok),
        "peak_reset": reset_ok,
        "bound_mb": bound / 2**20,
    }


def run_phase(store: Path, name: str, scale: int, quick: bool) -> dict:
    command = [
        sys.executable,
        "-m",
        "bench.training_memory",
        "--phase",
        name,
        "--scale",
        str(scale),
        "--store",
        str(store),
    ]
    out = subprocess.run(
        command + (["--quick"] if quick else []), cwd=REPO, check=True, capture_output=True, text=True
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def render(info: dict, rows: list[dict], command: str) -> str:
    lines = [
        f"### Results ({info['date']}, commit {info['commit']})",
        "",
        f"Machine: {info['nproc']} cores (nproc), {info['cpu_model']}; {info['platform']}. Python {info['python']}, "
        f"torch {info['torch']}, rasterio {info['rasterio']} (GDAL {info['gdal']}). 1-min load average "
        f"{info['loadavg_1min_at_start']} at the start, {info['loadavg_1min_at_end']} at the end.",
        "",
        f"Command: `{command}`. Each phase in a fresh process; settings equal at every scale (asserted).",
        "",
        "| phase | set | tiles | peak RSS MB | RSS before MB | peak - before MB | tile data bound MB | seconds |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['phase']} | {r['scale']}x | {r['tiles']} | {r['peak_mb']:.0f} | {r['baseline_mb']:.0f} | "
            f"{r['peak_mb'] - r['baseline_mb']:.0f} | {r['bound_mb']:.0f} | {r['seconds']:.1f} |"
        )
    lines += [
        "",
        "*tile data bound*: `geo_assets.ml.memory`'s bound on the tiles and chips held (README, \"Training and "
        'evaluation memory"); *peak - before* also holds what does not grow with the set: the model, its '
        "activations and gradients for one batch, the exported files (training), GDAL's block cache.",
        "",
    ]
    for name, large, small, ratio in ratios(rows):
        lines.append(
            f"- {name}: peak {large}x / {small}x = **{ratio:.2f}x** (target <= {TARGET}x: {'met' if ratio <= TARGET else 'NOT met'})."
        )
    return "\n".join(lines)


def ratios(rows: list[dict]) -> list[tuple[str, int, int, float]]:
    peak = {(r["phase"], r["scale"]): r["peak_mb"] for r in rows}
    return [(name, large, small, peak[name, large] / peak[name, small]) for name, large, small in TARGETS]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.training_memory", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="1 epoch of 32 chips (the sets stay the demo's and 4x)")
    ap.add_argument("--no-doc", action="store_true", help="print the section instead of writing BENCHMARKS.md")
    ap.add_argument("--phase", choices=["training", "evaluation"], help=argparse.SUPPRESS)
    ap.add_argument("--scale", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--store", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.phase:  # a child: one phase, its figures as the last line
        print(json.dumps(phase(args)))
        return 0

    from geo_assets.geo.store import Store, local_root

    info = machine_info()
    info["commit"] = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
    ).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="bench-training-memory-") as tmp:
        store = Store(local_root(Path(tmp) / "store"))
        for name, regions in (("training", TRAIN), ("evaluation", HOLDOUT)):
            for scale in SCALES[name]:
                store.write_json(f"sets/{name}-{scale}x.json", cut_set(store, regions, scale))
        rows = []
        for name in ("training", "evaluation"):  # training 1x first: evaluation scores its version
            for scale in SCALES[name]:
                rows.append(run_phase(Path(tmp) / "store", name, scale, args.quick))
                print(f"{name} {scale}x: {rows[-1]['tiles']} tiles, peak {rows[-1]['peak_mb']:.0f} MB", file=sys.stderr)
    for name in ("training", "evaluation"):
        one, *larger = (next(r for r in rows if r["phase"] == name and r["scale"] == s) for s in SCALES[name])
        for other in larger:
            assert one["settings"] == other["settings"], (one["settings"], other["settings"])
            assert other["tiles"] == other["scale"] * one["tiles"], (one["tiles"], other["tiles"])
    info["loadavg_1min_at_end"] = round(os.getloadavg()[0], 2)
    command = "python -m bench.training_memory" + (" --quick" if args.quick else "")
    section = render(info, rows, command)
    if args.no_doc:
        print(section)
    else:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps({"machine": info, "rows": rows}, indent=2))
        write_section(
            "training-memory", MEASURES, "## Training and evaluation memory (bench.training_memory)\n\n" + section
        )
    missed = [
        f"{name} {large}x / {small}x = {ratio:.2f}x" for name, large, small, ratio in ratios(rows) if ratio > TARGET
    ]
    if missed:
        print(f"peak memory grows with the set: {', '.join(missed)} (target <= {TARGET}x)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
