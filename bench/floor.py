"""Benchmark: the forward-pass floor of the demo's U-Net, per inference runtime and layout.

    .venv/bin/python -m bench.floor [--tiles 256] [--repeats 3] [--quick] [--compile]

The model is the demo's architecture (`unet`, base_channels 16, depth 3; 4 bands in, 5 classes
out), trained briefly on a synthetic scene so that its classes are not near-ties everywhere, and
exported as the platform exports every version (model.pt2 and model.onnx). The tiles are N tiles
of 256 x 256 px cut from another synthetic scene, normalised and held in memory: only forward
passes are timed (logits out, no argmax, no I/O).

For each runtime installed, each split of the cores into streams x intra-op threads and each
batch size, every stream takes batches from a shared list until all N tiles are done; wall time
and process CPU time (all threads) are measured, runtimes alternating within each repeat; medians.
Runtimes: torch eager (the exported program, as the platform runs it on CUDA and as fallback),
ONNX Runtime (the shipped default on the CPU), and when installed OpenVINO (the same model.onnx)
and, with --compile, torch.compile (inductor; compiling is not timed). Each runtime's classes are
compared with eager's on every pixel of the N tiles. Results go to bench/results/floor.json and
the "floor" section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from bench.common import REPO, machine_info, write_section

# What the figures measure (bench.stale): a change to any of these since the recorded commit makes them stale.
MEASURES = [
    "bench/floor.py",
    "geo_assets/ml/export.py",
    "geo_assets/ml/predict.py",
    "geo_assets/ml/models.py",
    "geo_assets/ml/layout.py",
    "geo_assets/ml/device.py",
]

RESULTS = REPO / "bench" / "results" / "floor.json"
TILE_PX, BANDS = 256, ["blue", "green", "red", "nir"]
ORIGIN = (501760.0, 5171200.0)  # on the 256 px x 10 m grid, north of the built-in regions
BATCHES = (1, 2, 4, 8, 16)

Forward = Callable[[np.ndarray], np.ndarray]  # (N,C,H,W) float32 -> (N,K,H,W) logits


# --------------------------------------------------------------------------------------------------
# The model and the tiles (setup, not timed).


def demo_model(work: Path, quick: bool) -> dict[str, Path]:
    """Train the demo architecture briefly on a synthetic scene; export it as a version is exported."""
    from geo_assets.geo import synthetic
    from geo_assets.geo.landcover import CLASSES
    from geo_assets.ml.export import EXPORTS
    from geo_assets.ml.normalisation import normalize
    from geo_assets.ml.train import TrainConfig, train

    side = 512 * 10.0
    image, truth = synthetic.scene(
        "synth-train-a", "2024-06-01", (ORIGIN[0], ORIGIN[1] - side, ORIGIN[0] + side, ORIGIN[1]), 10.0, BANDS
    )
    config = TrainConfig(
        architecture="unet",
        hyperparameters={},
        epochs=1 if quick else 3,
        batch_size=8,
        learning_rate=2e-3,
        chip_size=128,
        chips_per_epoch=64 if quick else 256,
        seed=0,
        device="cpu",
    )
    model = train([normalize(image)], [truth], len(BANDS), len(CLASSES), config).model
    return {name: export(model, work / name, len(BANDS)) for name, export in EXPORTS.items()}


def demo_tiles(n: int) -> np.ndarray:
    """n normalised tiles of 256 px from a synthetic scene (another ground than the training one)."""
    from geo_assets.geo import synthetic
    from geo_assets.ml.normalisation import normalize

    cols = int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    g = TILE_PX * 10.0
    west, north = ORIGIN[0] + 4 * g, ORIGIN[1]
    image, _ = synthetic.scene(
        "synth-holdout", "2024-06-01", (west, north - rows * g, west + cols * g, north), 10.0, BANDS
    )
    tiles = [
        image[:, r * TILE_PX : (r + 1) * TILE_PX, c * TILE_PX : (c + 1) * TILE_PX]
        for r in range(rows)
        for c in range(cols)
    ]
    return normalize(np.stack(tiles[:n]))


# --------------------------------------------------------------------------------------------------
# Runtimes: each gives a forward for a (streams, threads) layout, callable from `streams` threads.


def torch_forwards(pt2: Path):
    import torch

    from geo_assets.ml.export import load_model

    module = load_model(pt2, "cpu")

    def make(streams: int, threads: int) -> Forward:
        torch.set_num_threads(threads)  # per process: each stream's ops run on its calling thread when 1

        def forward(x):
            with torch.inference_mode():
                return module(torch.from_numpy(x)).numpy()

        return forward

    return make


def compile_forwards(pt2: Path):
    import torch

    from geo_assets.ml.export import load_model

    compiled = torch.compile(load_model(pt2, "cpu"), dynamic=False)  # compiled per batch shape at warm-up

    def factory(streams: int, threads: int) -> Forward:
        torch.set_num_threads(threads)

        def forward(x):
            with torch.inference_mode():
                return compiled(torch.from_numpy(x)).numpy()

        return forward

    return factory


def onnxruntime_forwards(onnx: Path):
    import onnxruntime as ort

    sessions = {}

    def make(streams: int, threads: int) -> Forward:
        if threads not in sessions:  # the platform's settings (geo_assets.ml.runtime)
            options = ort.SessionOptions()
            options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            sessions[threads] = ort.InferenceSession(str(onnx), options, providers=["CPUExecutionProvider"])
        session = sessions[threads]
        return lambda x: session.run(["logits"], {"image": x})[0]

    return make


def openvino_forwards(onnx: Path):
    import openvino as ov

    core = ov.Core()
    model = core.read_model(str(onnx))

    def make(streams: int, threads: int) -> Forward:
        compiled = core.compile_model(
            model,
            "CPU",
            {
                "PERFORMANCE_HINT": "THROUGHPUT",
                "NUM_STREAMS": streams,
                "INFERENCE_NUM_THREADS": streams * threads,
                "INFERENCE_PRECISION_HINT": "f32",  # as the others: no bf16 on CPUs that have it
            },
        )
        local = threading.local()

        def forward(x):
            if not hasattr(local, "request"):
                local.request = compiled.create_infer_request()
            return local.request.infer({0: x})[0].copy()

        return forward

    return make


def runtimes(files: dict[str, Path], want_compile: bool) -> dict[str, Callable]:
    found = {"torch": torch_forwards(files["model.pt2"])}
    try:
        found["onnxruntime"] = onnxruntime_forwards(files["model.onnx"])
    except ImportError:
        pass
    try:
        found["openvino"] = openvino_forwards(files["model.onnx"])
    except ImportError:
        pass
    if want_compile:
        found["torch.compile"] = compile_forwards(files["model.pt2"])
    return found


# --------------------------------------------------------------------------------------------------
# The measurement.


def splits(cores: int) -> list[tuple[int, int]]:
    from geo_assets.ml.layout import thread_splits

    return thread_splits(cores)


def run_floor(forward: Forward, tiles: np.ndarray, streams: int, batch: int) -> dict:
    """Forward passes over every tile: `streams` threads take batches of `batch` from a shared list."""
    starts = list(range(0, len(tiles), batch))
    lock = threading.Lock()

    def stream() -> None:
        while True:
            with lock:
                if not starts:
                    return
                i = starts.pop(0)
            forward(tiles[i : i + batch])

    for _ in range(streams):  # warm-up: allocations and kernels for this batch shape
        forward(tiles[:batch])
    c0, t0 = time.process_time(), time.perf_counter()
    with ThreadPoolExecutor(streams) as pool:
        for f in [pool.submit(stream) for _ in range(streams)]:
            f.result()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"wall_s": wall, "cpu_ms_per_tile": 1000 * cpu / len(tiles), "tiles_per_s": len(tiles) / wall}


def agreement(forward: Forward, reference: np.ndarray, tiles: np.ndarray) -> float:
    """Share of pixels whose class equals eager's."""
    equal = 0
    for i in range(0, len(tiles), 8):
        equal += int((forward(tiles[i : i + 8]).argmax(1) == reference[i : i + 8]).sum())
    return equal / reference.size


def best_floor(make: Callable, tiles: np.ndarray, cores: int, batches=BATCHES) -> tuple[dict, list[dict]]:
    """Every (split, batch) once; the fastest by wall time, and all rows."""
    rows = []
    for streams, threads in splits(cores):
        forward = make(streams, threads)
        for batch in batches:
            rows.append(
                {"streams": streams, "threads": threads, "batch": batch, **run_floor(forward, tiles, streams, batch)}
            )
    return min(rows, key=lambda r: r["wall_s"]), rows


# --------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.floor", description=__doc__.split("\n\n")[0])
    ap.add_argument("--tiles", type=int, default=256, help="tiles of 256 px held in memory (default 256)")
    ap.add_argument("--repeats", type=int, default=3, help="alternating repeats (default 3)")
    ap.add_argument("--quick", action="store_true", help="32 tiles, 1 repeat, batches 1 and 4, a model trained less")
    ap.add_argument("--compile", action="store_true", help="also torch.compile (needs a C++ compiler; slow to compile)")
    args = ap.parse_args(argv)
    if args.quick:
        args.tiles, args.repeats = 32, 1
    if not 1 <= args.tiles <= 4096 or not 1 <= args.repeats <= 50:
        ap.error("--tiles must be in 1..4096 and --repeats in 1..50")
    batches = (1, 4) if args.quick else BATCHES

    from geo_assets.ml.device import cores as count_cores

    info = machine_info()
    cores = count_cores()
    print(
        f"floor benchmark: {args.tiles} tiles, {args.repeats} repeat(s), {cores} cores, "
        f"load average {info['loadavg_1min_at_start']}",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="geo-assets-floor-") as tmp:
        t0 = time.perf_counter()
        files = demo_model(Path(tmp), args.quick)
        tiles = demo_tiles(args.tiles)
        setup_s = time.perf_counter() - t0
        found = runtimes(files, args.compile)
        eager = torch_forwards(files["model.pt2"])(1, cores)
        reference = np.concatenate([eager(tiles[i : i + 8]).argmax(1) for i in range(0, len(tiles), 8)])
        rows: dict[str, list[list[dict]]] = {name: [] for name in found}
        for r in range(args.repeats):
            for name in list(found) if r % 2 == 0 else list(found)[::-1]:
                best, all_rows = best_floor(found[name], tiles, cores, batches)
                rows[name].append(all_rows)
                print(
                    f"  repeat {r + 1} {name:14s} best: {best['streams']}x{best['threads']} batch {best['batch']}: "
                    f"{best['tiles_per_s']:.1f} tiles/s, {best['cpu_ms_per_tile']:.1f} ms CPU/tile",
                    flush=True,
                )
        agree = {name: agreement(make(1, cores), reference, tiles) for name, make in found.items()}
    info["loadavg_1min_at_end"] = round(os.getloadavg()[0], 2)
    summary = summarise(rows, agree, args.tiles)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "benchmark": "floor",
                "machine": info,
                "tiles": args.tiles,
                "repeats": args.repeats,
                "setup_s": setup_s,
                "summary": summary,
                "runs": rows,
            },
            indent=2,
        )
        + "\n"
    )
    section = render(info, args, summary, cores)
    print("\n" + section)
    write_section("floor", MEASURES, section)
    return 0


def summarise(rows: dict[str, list[list[dict]]], agree: dict[str, float], n: int) -> dict:
    out = {}
    for name, repeats in rows.items():
        cells = {}
        for layout_rows in zip(*repeats):  # the same (split, batch) across repeats
            first = layout_rows[0]
            cells[(first["streams"], first["threads"], first["batch"])] = {
                "tiles_per_s": statistics.median(r["tiles_per_s"] for r in layout_rows),
                "cpu_ms_per_tile": statistics.median(r["cpu_ms_per_tile"] for r in layout_rows),
            }
        (s, t, b), best = max(cells.items(), key=lambda kv: kv[1]["tiles_per_s"])
        out[name] = {
            "best": {
                "streams": s,
                "threads": t,
                "batch": b,
                **best,
                "mpx_per_s": best["tiles_per_s"] * TILE_PX**2 / 1e6,
                "floor_s": n / best["tiles_per_s"],
            },
            "cells": [{"streams": k[0], "threads": k[1], "batch": k[2], **v} for k, v in cells.items()],
            "pixels_equal_to_eager": agree[name],
        }
    return out


def render(info: dict, args, summary: dict, cores: int) -> str:
    eager = summary["torch"]["best"]["tiles_per_s"]
    lines = [
        "## floor: forward passes alone, per runtime and layout",
        "",
        "Why ONNX Runtime: the forward pass of the demo's U-Net on each runtime installed here, over the same tiles in "
        "memory, at every split of the cores into streams x intra-op threads and batch sizes 1 to 16. CPU ms per tile "
        "is the figure to trust on a shared machine; the agreement column compares each runtime's classes with torch "
        "eager's on every pixel.",
        "",
        f"### Results ({info['date']})",
        "",
        f"The demo's U-Net (unet, base_channels 16, depth 3), trained briefly on a synthetic scene and exported as "
        f"every version is; {args.tiles} synthetic tiles of 256 x 256 px x 4 bands held in memory; only forward "
        "passes timed (logits out). Every split of the cores into streams x intra-op threads and every batch size, "
        f"runtimes alternating, median of {args.repeats} repeat(s). `.venv/bin/python -m bench.floor"
        f"{' --quick' if args.quick else ''}{' --compile' if args.compile else ''}`.",
        "",
        "| runtime | best layout (streams x threads, batch) | tiles/s | Mpx/s | CPU ms/tile | vs eager | pixels equal to eager |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for name, s in summary.items():
        b = s["best"]
        lines.append(
            f"| {name} | {b['streams']} x {b['threads']}, batch {b['batch']} | {b['tiles_per_s']:.1f} "
            f"| {b['mpx_per_s']:.2f} | {b['cpu_ms_per_tile']:.1f} | {b['tiles_per_s'] / eager:.2f}x "
            f"| {100 * s['pixels_equal_to_eager']:.3f}% |"
        )
    lines += ["", "CPU ms per tile by batch size (on the best split of each runtime):", ""]
    batches = sorted({c["batch"] for s in summary.values() for c in s["cells"]})
    lines.append("| runtime | split | " + " | ".join(f"batch {b}" for b in batches) + " |")
    lines.append("|---|---|" + "---:|" * len(batches))
    for name, s in summary.items():
        split = (s["best"]["streams"], s["best"]["threads"])
        cells = {c["batch"]: c for c in s["cells"] if (c["streams"], c["threads"]) == split}
        lines.append(
            f"| {name} | {split[0]} x {split[1]} | "
            + " | ".join(f"{cells[b]['cpu_ms_per_tile']:.1f}" for b in batches)
            + " |"
        )
    lines += [
        "",
        f"Machine: {info['nproc']} cores ({info['cpu_model']}), Python {info['python']}, torch {info['torch']}, "
        f"{info['date']}. 1-min load average {info['loadavg_1min_at_start']} at the start, "
        f"{info['loadavg_1min_at_end']} at the end (near or above {cores} the wall figures are noisy; CPU ms/tile "
        "much less so).",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
