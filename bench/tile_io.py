"""Benchmark: the CPU cost of a tile's read and write, and what threads and GDAL settings add to it.

    .venv/bin/python -m bench.tile_io [--tiles 256] [--repeats 5]

A region's folder of 1024 imagery tiles (256 x 256 px, 4 bands uint16, DEFLATE COGs, as imagery_tiles
stores them) is read tile by tile with `geo_assets.geo.cog.read_raster`, and class tiles are written with
`write_cog`, measured as CPU time per tile (medians of the repeats):

* reused thread: every tile on the same thread, as the platform's process-wide pools do (engine.threads);
* fresh thread: every tile on a thread of its own, as a pool made per batch of one tile did: the first
  raster a thread opens builds GDAL's per-thread state (its PROJ context);
* with and without the local store's GDAL setting `GDAL_DISABLE_READDIR_ON_OPEN=EMPTY_DIR`: without it
  GDAL lists the tile's folder on every open, looking for sidecar files.

Every mode must read the same pixels (asserted). Results go to bench/results/tile_io.json and the
`tile-io` section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from bench.common import REPO, machine_info, write_section

# What the figures measure (bench.stale): a change to any of these since the recorded commit makes them stale.
MEASURES = ["bench/tile_io.py", "geo_assets/geo/cog.py", "geo_assets/geo/store.py"]

REGION_TILES, PX, BANDS = 1024, 256, 4
CRS = "EPSG:32631"


def make_region(folder: Path) -> list[Path]:
    from affine import Affine

    from geo_assets.geo.cog import write_cog

    rng = np.random.default_rng(0)
    paths = []
    for i in range(REGION_TILES):
        row, col = divmod(i, 32)
        data = rng.integers(300, 4000, (BANDS, PX, PX), dtype=np.uint16)
        path = folder / f"{col}_{row}.tif"
        write_cog(
            path,
            data,
            CRS,
            Affine(10, 0, 500000 + col * 2560, 0, -10, 5200000 - row * 2560),
            0,
            ["blue", "green", "red", "nir"],
        )
        paths.append(path)
    return paths


def cpu_ms(fn, items, fresh: bool) -> float:
    """CPU ms per item of fn over items, each on this thread or on a new thread of its own."""
    start = time.process_time()
    for item in items:
        if fresh:
            t = threading.Thread(target=fn, args=(item,))
            t.start()
            t.join()
        else:
            fn(item)
    return 1000 * (time.process_time() - start) / len(items)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.tile_io", description=__doc__.split("\n\n")[0])
    ap.add_argument("--tiles", type=int, default=256, help="tiles read and written per measurement (1..1024)")
    ap.add_argument("--repeats", type=int, default=5, help="measurements per mode (1..50)")
    args = ap.parse_args(argv)
    if not 1 <= args.tiles <= REGION_TILES or not 1 <= args.repeats <= 50:
        ap.error(f"--tiles must be in 1..{REGION_TILES} and --repeats in 1..50")

    from geo_assets.geo.cog import read_raster, write_cog
    from geo_assets.geo.store import LocalStore, local_root

    info = machine_info()
    with tempfile.TemporaryDirectory(prefix="geo-assets-tile-io-") as tmp:
        region, out = Path(tmp) / "region", Path(tmp) / "out"
        region.mkdir()
        out.mkdir()
        paths = make_region(region)[: args.tiles]
        local = LocalStore(local_root(region)).env  # the local store's GDAL settings
        envs = {"local store setting (EMPTY_DIR)": local, "GDAL defaults": contextlib.nullcontext}

        def reader(env):
            def read(path):
                with env():
                    return read_raster(path)[0]

            return read

        expected = [read_raster(p)[0] for p in paths]
        for env in envs.values():  # same pixels whatever the mode
            got = [reader(env)(p) for p in paths]
            assert all(np.array_equal(a, b) for a, b in zip(got, expected)), "a mode read different pixels"

        y, x = np.mgrid[:PX, :PX]  # a class map of smooth patches, as predictions are
        classes = ((np.sin(x / 17) + np.cos(y / 23) + 2) * 1.2).astype(np.uint8)
        profile = read_raster(paths[0])[1]

        def write(i):
            write_cog(out / f"{i}.tif", classes, profile["crs"], profile["transform"], 255, ["class"])

        rows = []
        for name, env in envs.items():
            for fresh in (False, True):
                runs = [cpu_ms(reader(env), paths, fresh) for _ in range(args.repeats)]
                rows.append(
                    {
                        "what": "read",
                        "gdal": name,
                        "thread": "fresh" if fresh else "reused",
                        "cpu_ms": statistics.median(runs),
                        "runs": runs,
                    }
                )
        for fresh in (False, True):
            runs = [cpu_ms(write, range(args.tiles), fresh) for _ in range(args.repeats)]
            rows.append(
                {
                    "what": "write",
                    "gdal": "GDAL defaults",
                    "thread": "fresh" if fresh else "reused",
                    "cpu_ms": statistics.median(runs),
                    "runs": runs,
                }
            )

    info["loadavg_1min_at_end"] = round(os.getloadavg()[0], 2)
    lines = [
        f"### Results ({info['date']})",
        "",
        f"Machine: {info['nproc']} cores, {info['cpu_model']}; Python {info['python']}, rasterio {info['rasterio']} "
        f"(GDAL {info['gdal']}). 1-min load average {info['loadavg_1min_at_start']} at the start, "
        f"{info['loadavg_1min_at_end']} at the end. Command: `python -m bench.tile_io --tiles {args.tiles} "
        f"--repeats {args.repeats}`; medians of {args.repeats}. Pixels read are identical in every mode (asserted).",
        "",
        "| tile | GDAL settings | thread | CPU ms per tile |",
        "|---|---|---|---:|",
        *[f"| {r['what']} | {r['gdal']} | {r['thread']} | {r['cpu_ms']:.2f} |" for r in rows],
    ]
    section = "\n".join(lines)
    print(section)
    results = REPO / "bench" / "results" / "tile_io.json"
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(
        json.dumps(
            {"benchmark": "tile_io", "machine": info, "tiles": args.tiles, "repeats": args.repeats, "rows": rows},
            indent=2,
        )
        + "\n"
    )
    write_section("tile-io", MEASURES, section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
