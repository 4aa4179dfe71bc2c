"""Benchmark: what checking an imagery tile against its recorded pixel digest adds to its read.

    .venv/bin/python -m bench.tile_digest [--tiles 64] [--repeats 5]

Imagery tiles of 256 px (4 and 13 uint16 bands, and 4 float32 bands), DEFLATE COGs as imagery_tiles
stores them, are read with `geo_assets.geo.cog.read_raster` and their pixels digested with
`geo_assets.geo.integrity.pixel_digest`, the check every prediction read makes (geo.integrity):
CPU ms per tile, medians of the repeats. Results go to bench/results/tile_digest.json and the
`tile-digest` section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.common import REPO, machine_info, publish

MEASURES = ["bench/tile_digest.py", "geo_assets/geo/integrity.py", "geo_assets/geo/cog.py"]
PX = 256
KINDS = [(4, "uint16"), (13, "uint16"), (4, "float32")]


def make_tiles(folder: Path, bands: int, dtype: str, count: int) -> list[Path]:
    from affine import Affine

    from geo_assets.geo.cog import write_cog

    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        # Smooth fields plus noise, like imagery: random pixels alone would not compress as tiles do.
        y, x = np.mgrid[0:PX, 0:PX]
        base = 1000 + 800 * np.sin((x + 7 * i) / 23.0)[None] * np.cos(y / 31.0)[None]
        data = (base + rng.normal(0, 50, (bands, PX, PX))).clip(0, 10000).astype(dtype)
        path = folder / f"{i}_{bands}_{dtype}.tif"
        write_cog(
            path,
            data,
            "EPSG:32631",
            Affine(10, 0, 500000 + i * 2560, 0, -10, 5200000),
            0,
            [f"b{b}" for b in range(bands)],
        )
        paths.append(path)
    return paths


def cpu_ms(fn, items) -> float:
    start = time.process_time()
    for item in items:
        fn(item)
    return 1000 * (time.process_time() - start) / len(items)


def main(argv: list[str] | None = None) -> int:
    from geo_assets.geo.cog import read_raster
    from geo_assets.geo.integrity import pixel_digest

    ap = argparse.ArgumentParser(prog="python -m bench.tile_digest", description=__doc__.split("\n\n")[0])
    ap.add_argument("--tiles", type=int, default=64, help="tiles per measurement (1..1024)")
    ap.add_argument("--repeats", type=int, default=5, help="measurements per kind (1..50)")
    args = ap.parse_args(argv)
    if not 1 <= args.tiles <= 1024 or not 1 <= args.repeats <= 50:
        ap.error("--tiles must be in 1..1024 and --repeats in 1..50")
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-digest-") as tmp:
        for bands, dtype in KINDS:
            paths = make_tiles(Path(tmp), bands, dtype, args.tiles)
            arrays = [read_raster(p)[0] for p in paths]
            read = statistics.median(cpu_ms(read_raster, paths) for _ in range(args.repeats))
            digest = statistics.median(cpu_ms(pixel_digest, arrays) for _ in range(args.repeats))
            rows.append(
                {
                    "bands": bands,
                    "dtype": dtype,
                    "mb": round(arrays[0].nbytes / 2**20, 2),
                    "read_ms": round(read, 3),
                    "digest_ms": round(digest, 3),
                    "share": round(digest / read, 3),
                }
            )
    info = machine_info()
    lines = [
        "## Tile digests on read",
        "",
        f"`python -m bench.tile_digest --tiles {args.tiles} --repeats {args.repeats}` on {info['cpu_model']} "
        f"({info['nproc']} cores, load {info['loadavg_1min_at_start']} at start), {info['date']}: CPU ms per "
        f"{PX} px tile, medians of {args.repeats}.",
        "",
        "| bands | dtype | decoded MB | read ms | digest ms | digest / read |",
        "|---|---|---|---|---|---|",
        *[
            f"| {r['bands']} | {r['dtype']} | {r['mb']} | {r['read_ms']} | {r['digest_ms']} | {r['share']:.0%} |"
            for r in rows
        ],
    ]
    publish(
        "tile-digest",
        MEASURES,
        REPO / "bench" / "results" / "tile_digest.json",
        {"machine": info, "tiles": args.tiles, "repeats": args.repeats, "rows": rows},
        "\n".join(lines),
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
