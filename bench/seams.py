"""Benchmark: what predicting tiles with a margin from their neighbours (no seams) costs.

    .venv/bin/python -m bench.seams [--side 8] [--margins 0 16 32] [--repeats 3]

A synthetic region of side x side tiles of 256 px (4 bands, 10 m, EPSG:32631) is stored as tile COGs
in a local store, and the demo's architecture (U-Net, base 16, depth 3; a short training, enough for
classes that change across the region) predicts it with `predict_tiles`, ONNX Runtime on the CPU, once per
margin, alternately, `repeats` times. Each margin runs at its own best layout (batch size and threads
measured on the machine for its window size, as the platform does). Reported: median wall time, Mpx/s
of class tiles written, the cost against margin 0, and how far each margin is from one forward pass
over the whole region's mosaic (padded by reflection at the region's edge, as tiles are) on the pixels
within 16 px of an edge between two tiles. Margin 0 is how tiles were predicted before. Results go to
bench/results/seams.json and the `seams` section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.common import INFERENCE, REPO, TILE_IO, machine_info, write_section

# What the figures measure (bench.stale): a change to any of these since the recorded commit makes them stale.
MEASURES = ["bench/seams.py", *INFERENCE, *TILE_IO]

TILE_PX, RES, CRS = 256, 10.0, "EPSG:32631"
WEST, NORTH = 196 * 2560.0, 2000 * 2560.0
BANDS = ["blue", "green", "red", "nir"]
SEAM = 16
MAX_SIDE = 32  # tiles per side: the whole-region reference pass must fit in memory


def setup(work: Path, side: int):
    import numpy as np
    from affine import Affine

    from geo_assets.geo import synthetic
    from geo_assets.geo.cog import write_cog
    from geo_assets.geo.landcover import CLASSES
    from geo_assets.geo.store import Store, local_root
    from geo_assets.ml.export import export_onnx
    from geo_assets.ml.normalisation import Normalisation
    from geo_assets.ml.train import TrainConfig, train

    store = Store(local_root(work / "store"))
    bounds = (WEST, NORTH - side * TILE_PX * RES, WEST + side * TILE_PX * RES, NORTH)
    image, truth = synthetic.scene("bench-seams", "2024-06-01", bounds, RES, BANDS)
    entries = []
    for r in range(side):
        for c in range(side):
            key, path = f"{c}_{r}", f"imagery/{c}_{r}.tif"
            with store.writing(path) as tmp:
                write_cog(
                    tmp,
                    image[:, r * TILE_PX : (r + 1) * TILE_PX, c * TILE_PX : (c + 1) * TILE_PX],
                    CRS,
                    Affine(RES, 0, WEST + c * TILE_PX * RES, 0, -RES, NORTH - r * TILE_PX * RES),
                    0,
                    BANDS,
                )
            entries.append({"key": key, "path": path})
    normalisation = Normalisation.fit([image], BANDS)  # as training fits it, stored with a version
    inputs = normalisation(image, BANDS)
    config = TrainConfig(
        architecture="unet",
        hyperparameters={"base_channels": 16, "depth": 3},
        epochs=2,
        batch_size=8,
        learning_rate=5e-3,
        chip_size=128,
        chips_per_epoch=128,
        seed=0,
        device="cpu",
    )
    model = train([np.asarray(inputs, dtype=np.float32)], [truth], len(BANDS), len(CLASSES), config).model
    with store.writing("model/model.onnx") as tmp:
        export_onnx(model, tmp, len(BANDS))
    return store, entries, image, normalisation


def whole_region(runtime, image, margin: int, normalise):
    import numpy as np

    from geo_assets.ml.predict import classify

    padded = np.pad(image, ((0, 0), (margin, margin), (margin, margin)), mode="reflect") if margin else image
    with runtime.session(None) as forward:
        classes = classify(forward, normalise(padded)[None], runtime.multiple, None, runtime.in_channels)[0]
    return classes[margin : margin + image.shape[1], margin : margin + image.shape[2]]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--side", type=int, default=8, help=f"tiles per side of the region (2 to {MAX_SIDE})")
    parser.add_argument("--margins", type=int, nargs="+", default=[0, 16, 32])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    if not 2 <= args.side <= MAX_SIDE:
        parser.error(f"--side must be between 2 and {MAX_SIDE}, got {args.side}")
    if not 1 <= args.repeats <= 20:
        parser.error(f"--repeats must be between 1 and 20, got {args.repeats}")
    if 0 not in args.margins:
        args.margins = [0, *args.margins]  # the baseline
    import numpy as np
    import torch

    from geo_assets.geo.cog import read_raster
    from geo_assets.ml.inference import predict_tiles
    from geo_assets.ml.runtime import load_runtime

    work = Path(tempfile.mkdtemp(prefix="geo-assets-seams-"))
    os.environ["GEO_ASSETS_CACHE_DIR"] = str(work / "cache")  # layouts measured here, not from an old cache
    try:
        t0 = time.perf_counter()
        store, entries, image, normalisation = setup(work, args.side)
        runtime = load_runtime(store, "model/model.onnx", torch.device("cpu"), "onnxruntime")
        print(f"setup {time.perf_counter() - t0:.0f} s: {len(entries)} tiles, ONNX Runtime", flush=True)
        seam = np.zeros(image.shape[1:], dtype=bool)
        for edge in range(TILE_PX, image.shape[1], TILE_PX):
            seam[:, edge - SEAM : edge + SEAM] = True
            seam[edge - SEAM : edge + SEAM, :] = True
        times: dict[int, list[float]] = {m: [] for m in args.margins}
        layouts, agreement = {}, {}
        for repeat in range(args.repeats + 1):  # the first round measures each margin's layout, untimed
            for margin in args.margins:
                started = time.perf_counter()
                results = predict_tiles(
                    store,
                    runtime,
                    torch.device("cpu"),
                    entries,
                    f"predictions/m{margin}",
                    normalise=normalisation,
                    margin=margin,
                    on_layout=lambda chosen, m=margin: layouts.setdefault(m, chosen),
                )
                seconds = time.perf_counter() - started
                if repeat:
                    times[margin].append(seconds)
                    print(f"margin {margin:3d} px: {seconds:.2f} s", flush=True)
                elif margin not in agreement:
                    classes = {r["key"]: read_raster(store.path(r["path"]))[0][0] for r in results}
                    ours = np.block([[classes[f"{c}_{r}"] for c in range(args.side)] for r in range(args.side)])
                    whole = whole_region(runtime, image, margin, lambda data: normalisation(data, BANDS))
                    agreement[margin] = float(np.mean(ours[seam] == whole[seam]))
        mpx = len(entries) * TILE_PX * TILE_PX / 1e6
        base = statistics.median(times[0])
        rows = []
        for margin in args.margins:
            median = statistics.median(times[margin])
            layout = layouts[margin]
            rows.append(
                {
                    "margin": margin,
                    "median_s": round(median, 3),
                    "runs_s": [round(t, 3) for t in times[margin]],
                    "mpx_per_s": round(mpx / median, 3),
                    "cost": round(median / base, 3),
                    "seam_agreement": round(agreement[margin], 5),
                    "layout": {"batch": layout.batch_size, "streams": layout.streams, "threads": layout.threads},
                }
            )
        info = machine_info()
        figures = {"tiles": len(entries), "tile_px": TILE_PX, "mpx": mpx, "rows": rows, "machine": info}
        print(json.dumps(rows, indent=1))
        (REPO / "bench" / "results").mkdir(parents=True, exist_ok=True)
        (REPO / "bench" / "results" / "seams.json").write_text(json.dumps(figures, indent=1))
        table = [
            f"| {r['margin']} | {r['median_s']:.2f} | {r['mpx_per_s']:.2f} | {r['cost']:.2f}x | "
            f"{100 * r['seam_agreement']:.2f} % | {r['layout']['streams']} x {r['layout']['threads']} @ {r['layout']['batch']} |"
            for r in rows
        ]
        write_section(
            "seams",
            MEASURES,
            "\n".join(
                [
                    "## the cost of no seams: tiles predicted with a margin from their neighbours",
                    "",
                    f"A synthetic region of {args.side} x {args.side} tiles of {TILE_PX} px ({mpx:.1f} Mpx; 4 bands) in a local "
                    "store, predicted by `predict_tiles` (ONNX Runtime, the demo's U-Net: base 16, depth 3) with each margin, "
                    f"alternately, {args.repeats} times; each margin at its own measured layout. *Seam agreement*: pixels "
                    f"within {SEAM} px of an edge between two tiles that equal one forward pass over the whole region's "
                    "mosaic (reflect-padded at its edge, as tiles are). Margin 0 is tile by tile, as before. "
                    f"`.venv/bin/python -m bench.seams --side {args.side}`.",
                    "",
                    "| margin px | median s | Mpx/s | cost | seam agreement | streams x threads @ batch |",
                    "|---:|---:|---:|---:|---:|---|",
                    *table,
                    "",
                    f"Medians of {args.repeats} runs. Machine: {info['nproc']} cores ({info['cpu_model']}), 1-min load average "
                    f"{info['loadavg_1min_at_start']} at the start, {os.getloadavg()[0]:.2f} at the end, Python {info['python']}, torch {info['torch']}, "
                    f"GDAL {info['gdal']}, {info['date']}.",
                ]
            ),
        )
        return 0 if agreement[max(args.margins)] >= 0.999 else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
