"""Benchmark: COG window reads through the platform's reader versus a plain rasterio loop.

    .venv/bin/python -m bench.cog_reads [--repeats 3]

One synthetic Sentinel-2-like band (uint16, 5120 x 5120 px, 512 px blocks, DEFLATE, as Earth Search
serves them) is read as 400 windows of 256 x 256 px, from local disk and from a local S3 server
(SeaweedFS, GDAL /vsis3/ with signed requests):

* platform: `geo_assets.geo.stac.read_window` per window, as the STAC sources call it for each tile
  (it checks the COG's grid and reads the window from a dataset it keeps open per thread, so
  blocks shared by neighbouring tiles are fetched and decoded once), inside `stac.gdal_env(settings)`;
  it starts cold each run;
* plain: one `rasterio.open` and a loop of `src.read(1, window=...)` over the same windows, inside
  a `rasterio.Env` with the same endpoint and credentials.

Both check they read identical pixels. Ratio = platform Mpx/s / plain Mpx/s (target >= 0.9).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.common import REPO, machine_info, write_section

# What the figures measure (bench.stale): a change to any of these since the recorded commit makes them stale.
MEASURES = ["bench/cog_reads.py", "geo_assets/geo/stac/reads.py", "geo_assets/geo/store.py"]

SIDE, WINDOW, BLOCK = 5120, 256, 512
CRS = "EPSG:32631"
ORIGIN = (399360.0, 5130240.0)  # top-left, on the tile grid
RES = 10.0


def make_cog(path: Path) -> None:
    from affine import Affine

    from geo_assets.geo import synthetic
    from geo_assets.geo.cog import write_cog

    x, y = ORIGIN
    image, _ = synthetic.scene("bench-cog", "2024-06-01", (x, y - SIDE * RES, x + SIDE * RES, y), RES, ["red"])
    write_cog(path, image, CRS, Affine(RES, 0, x, 0, -RES, y), 0, ["red"], blocksize=BLOCK)


def windows() -> list[tuple[tuple[float, float, float, float], tuple[int, int]]]:
    x, y = ORIGIN
    g = WINDOW * RES
    return [
        ((x + c * g, y - (r + 1) * g, x + (c + 1) * g, y - r * g), (r, c))
        for r in range(SIDE // WINDOW)
        for c in range(SIDE // WINDOW)
    ]


def platform(path: str, settings) -> tuple[float, int]:
    from geo_assets.geo.stac import close_datasets, gdal_env, read_window

    close_datasets()  # every run starts cold, as a new tile job does
    t0 = time.perf_counter()
    checksum = 0
    with gdal_env(settings):
        for bounds, _ in windows():
            checksum += int(read_window(path, path, None, bounds, (WINDOW, WINDOW), CRS, RES, 0).sum(dtype=np.int64))
    return time.perf_counter() - t0, checksum


def plain(path: str, settings) -> tuple[float, int]:
    import rasterio
    from rasterio.session import AWSSession
    from rasterio.windows import Window

    options = {}
    session = None
    if settings.s3_endpoint:
        host = settings.s3_endpoint.split("://", 1)[1]
        options = dict(
            AWS_S3_ENDPOINT=host, AWS_HTTPS="NO", AWS_VIRTUAL_HOSTING="FALSE", GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR"
        )
        session = AWSSession(
            aws_access_key_id=settings.s3_access_key,
            aws_secret_access_key=settings.s3_secret_key,
            region_name=settings.s3_region,
        )
    t0 = time.perf_counter()
    checksum = 0
    with rasterio.Env(session=session, **options), rasterio.open(path) as src:
        for _, (r, c) in windows():
            checksum += int(src.read(1, window=Window(c * WINDOW, r * WINDOW, WINDOW, WINDOW)).sum(dtype=np.int64))
    return time.perf_counter() - t0, checksum


def main(argv: list[str] | None = None) -> int:
    from devtools.emulators.s3 import seaweedfs
    from geo_assets.geo.stac import ImagerySettings
    from geo_assets.geo.store import make_store

    ap = argparse.ArgumentParser(prog="python -m bench.cog_reads", description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=9)
    args = ap.parse_args(argv)
    mpx = len(windows()) * WINDOW * WINDOW / 1e6
    rows = []
    with tempfile.TemporaryDirectory(prefix="geo-assets-cog-reads-") as tmp:
        cog = Path(tmp) / "B04.tif"
        make_cog(cog)
        with seaweedfs(Path(tmp) / "s3", ["bench"], "bench-key", "bench-secret-key") as s3:
            store = make_store(
                "s3://bench/cogs",
                endpoint_url=s3.endpoint_url,
                access_key_id=s3.access_key,
                secret_access_key=s3.secret_key,
                region=s3.region,
            )
            store.write_bytes("B04.tif", cog.read_bytes())
            s3_settings = ImagerySettings(
                s3_endpoint=s3.endpoint_url,
                s3_no_sign=False,
                s3_region=s3.region,
                s3_access_key=s3.access_key,
                s3_secret_key=s3.secret_key,
            )
            for where, path, settings in (
                ("local disk", str(cog), ImagerySettings()),
                ("S3 server", "/vsis3/bench/cogs/B04.tif", s3_settings),
            ):
                times = {"platform": [], "plain": []}
                sums = set()
                for _ in range(args.repeats):
                    for mode, fn in (("platform", platform), ("plain", plain)):
                        seconds, checksum = fn(path, settings)
                        times[mode].append(seconds)
                        sums.add(checksum)
                if len(sums) != 1:
                    raise AssertionError(f"{where}: the two readers returned different pixels")
                p, q = statistics.median(times["platform"]), statistics.median(times["plain"])
                rows.append(
                    {
                        "where": where,
                        "platform_s": p,
                        "plain_s": q,
                        "platform_mpx_s": mpx / p,
                        "plain_mpx_s": mpx / q,
                        "ratio": q / p,
                    }
                )
                print(
                    f"{where}: platform {mpx / p:.1f} Mpx/s, plain {mpx / q:.1f} Mpx/s, ratio {q / p:.3f}", flush=True
                )
    info = machine_info()
    (REPO / "bench" / "results").mkdir(parents=True, exist_ok=True)
    (REPO / "bench" / "results" / "cog_reads.json").write_text(json.dumps({"rows": rows, "machine": info}, indent=1))
    lines = [
        "## COG window reads: the platform's reader versus a plain rasterio loop",
        "",
        f"{len(windows())} windows of {WINDOW} x {WINDOW} px ({mpx:.1f} Mpx) from one uint16 COG of {SIDE} x {SIDE} px "
        f"({BLOCK} px blocks, DEFLATE). platform: `stac.read_window` per window (as each tile does; the dataset is kept open "
        "per thread, cold at the start of each run); plain: one `rasterio.open` and `src.read(window=...)` in a loop. Median of "
        f"{args.repeats} alternating runs; ratio = platform Mpx/s / plain Mpx/s (target >= 0.9). "
        "`.venv/bin/python -m bench.cog_reads`.",
        "",
        "| from | platform Mpx/s | plain Mpx/s | ratio |",
        "|---|---:|---:|---:|",
        *(
            f"| {r['where']} | {r['platform_mpx_s']:.1f} | {r['plain_mpx_s']:.1f} | **{r['ratio']:.3f}** |"
            for r in rows
        ),
        "",
        f"Machine: {info['nproc']} cores ({info['cpu_model']}), Python {info['python']}, GDAL {info['gdal']}, "
        f"rasterio {info['rasterio']}, {info['date']}.",
    ]
    write_section("cog-reads", MEASURES, "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
