"""Benchmark: full-size Sentinel-2 tiles read through the `earth-search` source from S3, then predicted.

    .venv/bin/python -m bench.full_tile [--size 10980] [--grids 1 2]

For each grid n in --grids, n x n Sentinel-2 L2A items in Earth Search's layout are served locally:
one COG per band (blue, green, red, nir as B02, B03, B04, B08 at 10 m, and SCL at 20 m), `size` px
square (10980: a whole MGRS tile), 1024 px internal tiles, overviews, uint16, nodata 0, DEFLATE, under
`sentinel-cogs/sentinel-s2-l2a-cogs/...` in a local S3 server (SeaweedFS), and listed as STAC items
by a local STAC API (rustac). The pixels are the synthetic source's scene (items abut, unlike real
MGRS tiles, which overlap by 9.8 km); SCL says vegetation everywhere, so every pixel is valid. A region
covering the n x n items is then materialised through the aws profile (storage in the same S3 server):
`imagery_tiles` with source `earth-search` (the STAC search, windowed COG reads over /vsis3/, 256 px tiles
written back to S3), then `predictions` (ONNX Runtime, the default margin, class tiles and the mosaic
back to S3). Each step runs in a process of its own; reported per step: wall time, Mpx/s over the
region and the peak resident memory of that process and its children together (sampled every 0.1 s).
Target: predictions of the 2 x 2 grid (about 21,960 px square) under 2 GiB. Building the items and
training the model are setup, timed apart. Validate with a small `--size` (e.g. 2048).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import INFERENCE, REPO, TILE_IO, machine_info, write_section
from geo_assets.geo.acquisitions import pick_imagery

# What the figures measure (bench.stale): a change to any of these since the recorded commit makes them stale.
MEASURES = [
    "bench/full_tile.py",
    *INFERENCE,
    *TILE_IO,
    "geo_assets/geo",
    "geo_assets/assets",
    "resources",
    "geo_assets/ml/registry.py",
    "geo_assets/config.py",
    "geo_assets/definitions.py",
]

FULL_PX = 10980  # a Sentinel-2 L2A tile at 10 m
MIN_PX, BLOCK_PX = 1024, 1024
CRS, RES = "EPSG:32631", 10.0
ORIGIN = (156 * 2560.0, 1953 * 2560.0)  # south-west corner, on the 256 px x 10 m grid, south of the built-in regions
DATE, MODEL = "2024-06-01", "bench-unet"
BANDS = {"blue": "B02", "green": "B03", "red": "B04", "nir": "B08"}
TARGET_MB = 2048
ROWS_PER_WRITE = 1024  # the synthetic scene is made and written this many rows at a time


def region_name(n: int) -> str:
    return f"s2-full-{n}x{n}"


# --- the items -----------------------------------------------------------------------------------


def _item_cogs(paths: dict[str, Path], bounds, size: int, work: Path) -> None:
    """The synthetic scene over `bounds` as one COG per band like Sentinel-2's (`paths`: band -> file;
    "scl" is SCL at half the size, 4 = vegetation everywhere). Made by windows: never whole in memory."""
    import numpy as np
    import rasterio
    import rasterio.shutil
    from affine import Affine
    from rasterio.windows import Window

    from geo_assets.geo import synthetic

    res = (bounds[2] - bounds[0]) / size
    west, north = bounds[0], bounds[3]
    bands = [b for b in paths if b != "scl"]
    staging = {b: work / f"staging-{p.name}" for b, p in paths.items()}
    opened = {}
    for band, path in staging.items():
        px = size // 2 if band == "scl" else size
        opened[band] = rasterio.open(
            path,
            "w",
            driver="GTiff",
            width=px,
            height=px,
            count=1,
            dtype="uint8" if band == "scl" else "uint16",
            crs=CRS,
            transform=Affine(res * size / px, 0, west, 0, -res * size / px, north),
            nodata=0,
            tiled=True,
            blockxsize=512,
            blockysize=512,
        )
    try:
        step = ROWS_PER_WRITE
        for row in range(0, size, step):
            rows = min(step, size - row)
            for col in range(0, size, step):
                cols = min(step, size - col)
                box = (west + col * res, north - (row + rows) * res, west + (col + cols) * res, north - row * res)
                data = synthetic.scene("bench-full-tile", DATE, box, res, bands)[0]
                for i, band in enumerate(bands):
                    opened[band].write(data[i], 1, window=Window(col, row, cols, rows))
        opened["scl"].write(np.full((size // 2, size // 2), 4, dtype=np.uint8), 1)
    finally:
        for dst in opened.values():
            dst.close()
    with rasterio.Env(GDAL_CACHEMAX=256):
        for band, path in paths.items():
            rasterio.shutil.copy(
                staging[band],
                path,
                driver="COG",
                blocksize=BLOCK_PX,
                compress="DEFLATE",
                predictor="YES",
                overviews="AUTO",
                overview_resampling="NEAREST" if band == "scl" else "AVERAGE",
            )
            staging[band].unlink()


def build_items(work: Path, s3, n: int, size: int) -> Path:
    """n x n Earth Search items of `size` px, their COGs uploaded to sentinel-cogs; returns the items file."""
    import boto3

    from devtools.emulators.stac_data import _stac_item

    client = boto3.client(
        "s3",
        endpoint_url=s3.endpoint_url,
        region_name=s3.region,
        aws_access_key_id=s3.access_key,
        aws_secret_access_key=s3.secret_key,
    )
    items = []
    ground = size * RES
    x0, y0 = ORIGIN
    for j in range(n):
        for i in range(n):
            bounds = (x0 + i * ground, y0 + (n - 1 - j) * ground, x0 + (i + 1) * ground, y0 + (n - j) * ground)
            item_id = f"S2B_31UBQ{i}{j}_{DATE.replace('-', '')}_0_L2A"
            prefix = f"sentinel-s2-l2a-cogs/31/U/BQ{i}{j}/2024/6/{item_id}"
            names = {**BANDS, "scl": "SCL"}
            local = {b: work / "objects" / f"{item_id}-{name}.tif" for b, name in names.items()}
            local["blue"].parent.mkdir(parents=True, exist_ok=True)
            _item_cogs(local, bounds, size, work)
            assets = {}
            for band, name in names.items():
                px = size if band != "scl" else size // 2
                client.upload_file(str(local[band]), "sentinel-cogs", f"{prefix}/{name}.tif")
                local[band].unlink()
                raster = {
                    "nodata": 0,
                    "data_type": "uint8" if band == "scl" else "uint16",
                    "spatial_resolution": 20 if band == "scl" else 10,
                }
                if band != "scl":
                    raster.update(scale=0.0001, offset=-0.1)
                assets[band] = {
                    "href": f"s3://sentinel-cogs/{prefix}/{name}.tif",
                    "type": "image/tiff; application=geotiff; profile=cloud-optimized",
                    "roles": ["data"],
                    "raster:bands": [raster],
                    "proj:shape": [px, px],
                    "proj:transform": [ground / px, 0.0, bounds[0], 0.0, -ground / px, bounds[3]],
                }
            properties = {
                "datetime": f"{DATE}T10:56:19.000000Z",
                "platform": "sentinel-2b",
                "constellation": "sentinel-2",
                "eo:cloud_cover": 0.0,
                "s2:processing_baseline": "02.14",
                "proj:epsg": 32631,
                "earthsearch:boa_offset_applied": False,
            }
            items.append(_stac_item(item_id, "sentinel-2-l2a", bounds, CRS, properties, assets))
    path = work / f"items-{n}.json"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": items}))
    return path


# --- one step in its own process, its memory sampled ---------------------------------------------


def tree_rss_mb(pid: int) -> float:
    import psutil

    try:
        proc = psutil.Process(pid)
        procs = [proc, *proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total / 2**20


def run_step(job: str, key: str, ops: dict, assets: list[str], env: dict) -> tuple[float, float]:
    """(wall s, peak MB of the process tree) of one job run in a process of its own (`--step`)."""
    started = time.perf_counter()
    cmd = [sys.executable, "-m", "bench.full_tile", "--step", job, key, json.dumps(ops), ",".join(assets)]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env)
    peak = 0.0
    while proc.poll() is None:
        peak = max(peak, tree_rss_mb(proc.pid))
        time.sleep(0.1)
    seconds = time.perf_counter() - started
    if proc.returncode:
        raise RuntimeError(f"{job} {key} {assets} failed with exit code {proc.returncode}")
    return seconds, peak


def step(job: str, key: str, ops: str, assets: str) -> int:
    """Materialise `assets` of partition `key` with `job` in this process."""
    import dagster as dg

    from geo_assets.definitions import defs

    result = defs.resolve_job_def(job).execute_in_process(
        run_config={"ops": json.loads(ops), "loggers": {"console": {"config": {"log_level": "WARNING"}}}},
        instance=dg.DagsterInstance.get(),
        partition_key=key,
        asset_selection=[dg.AssetKey(a) for a in assets.split(",")] if assets else None,
    )
    return 0 if result.success else 1


# --- the benchmark -------------------------------------------------------------------------------


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=FULL_PX, help=f"px per item side ({MIN_PX} to {FULL_PX})")
    parser.add_argument("--grids", type=int, nargs="+", default=[1, 2], help="items per side of each region (1 to 3)")
    parser.add_argument("--step", nargs=4, metavar=("JOB", "PARTITION", "OPS", "ASSETS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.step:
        return step(*args.step)
    if not MIN_PX <= args.size <= FULL_PX or args.size % 2:
        parser.error(f"--size must be an even number of px between {MIN_PX} and {FULL_PX}, got {args.size}")
    if not all(1 <= n <= 3 for n in args.grids):
        parser.error(f"--grids must be between 1 and 3 items per side, got {args.grids}")

    from devtools.emulators.s3 import seaweedfs
    from devtools.emulators.stac import stac_api

    work = Path(tempfile.mkdtemp(prefix="geo-assets-full-tile-"))
    try:
        with seaweedfs(work / "s3", ["bench", "sentinel-cogs"], "bench-key", "bench-secret-key") as s3:
            t0 = time.perf_counter()
            items = {n: build_items(work, s3, n, args.size) for n in args.grids}
            build_s = time.perf_counter() - t0
            with stac_api(work, list(items.values())) as url:
                home = work / "home"
                home.mkdir()
                shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
                env = {
                    **os.environ,
                    "GEO_ASSETS_PROFILE": "aws",
                    "GEO_ASSETS_STORAGE_ROOT": "s3://bench/full-tile",
                    "DAGSTER_HOME": str(home),
                    "AWS_ENDPOINT_URL_S3": s3.endpoint_url,
                    "AWS_ACCESS_KEY_ID": s3.access_key,
                    "AWS_SECRET_ACCESS_KEY": s3.secret_key,
                    "AWS_REGION": s3.region,
                    "GEO_ASSETS_EARTH_SEARCH_URL": url,
                    "GEO_ASSETS_SOURCE_S3_ENDPOINT": s3.endpoint_url,
                    "GEO_ASSETS_CACHE_DIR": str(work / "cache"),
                }
                os.environ.update(env)
                return run(env, args.size, args.grids, build_s)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(env: dict, size: int, grids: list[int], build_s: float) -> int:
    import dagster as dg

    from geo_assets.cli.commands import register
    from geo_assets.geo.regions import Region, load_catalogue, save_catalogue
    from geo_assets.partitions import region_date_key
    from resources.profiles import resource_defs

    store = resource_defs()["storage"].store()
    catalogue = load_catalogue(store)
    x, y = ORIGIN
    for n in grids:
        catalogue.add(Region(region_name(n), (x, y, x + n * size * RES, y + n * size * RES), CRS, "earth-search"))
    save_catalogue(store, catalogue)
    register(dg.DagsterInstance.get(), regions=catalogue.names(), models=[MODEL])

    t0 = time.perf_counter()
    train = "synth-train-a"
    run_step("labels_job", train, {}, [], env)
    run_step("imagery_job", region_date_key(train, DATE), {}, [], env)
    run_step(
        "training_job",
        MODEL,
        {
            "training_set": {"config": {"regions": [train], "dates": [DATE]}},
            "trained_model": {"config": {"epochs": 1, "chips_per_epoch": 16}},
        },
        ["training_set", "trained_model"],
        env,
    )
    train_s = time.perf_counter() - t0
    version = store.read_json(f"manifests/trained_model/{MODEL}.json")["version"]

    rows = []
    for n in grids:
        key = region_date_key(region_name(n), DATE)
        imagery_s, imagery_mb = run_step(
            "imagery_job", key, {"imagery_tiles": {"config": {"source": "earth-search"}}}, ["imagery_tiles"], env
        )
        tiles = len(pick_imagery(store, region_name(n), DATE)[1]["tiles"])
        predict_s, predict_mb = run_step(
            "prediction_job",
            key,
            {"predictions": {"config": {"model": MODEL, "version": version}}},
            ["predictions"],
            env,
        )
        mpx = (n * size) ** 2 / 1e6
        rows.append(
            {
                "grid": n,
                "px": n * size,
                "mpx": round(mpx, 1),
                "tiles": tiles,
                "imagery": {
                    "seconds": round(imagery_s, 1),
                    "mpx_per_s": round(mpx / imagery_s, 3),
                    "peak_mb": round(imagery_mb),
                },
                "predictions": {
                    "seconds": round(predict_s, 1),
                    "mpx_per_s": round(mpx / predict_s, 3),
                    "peak_mb": round(predict_mb),
                },
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    info = machine_info()
    figures = {
        "size": size,
        "rows": rows,
        "target_mb": TARGET_MB,
        "setup_s": {"items": round(build_s, 1), "model": round(train_s, 1)},
        "machine": info,
    }
    (REPO / "bench" / "results").mkdir(parents=True, exist_ok=True)
    (REPO / "bench" / "results" / "full_tile.json").write_text(json.dumps(figures, indent=1))
    table = []
    for r in rows:
        for name in ("imagery", "predictions"):
            f = r[name]
            table.append(
                f"| {r['grid']} x {r['grid']} | {r['px']} | {r['tiles']} | `{'imagery_tiles' if name == 'imagery' else name}` "
                f"| {f['seconds']:.1f} | {f['mpx_per_s']:.2f} | {f['peak_mb']} |"
            )
    write_section(
        "full-tile",
        MEASURES,
        "\n".join(
            [
                "## full-size Sentinel-2 tiles through the `earth-search` source, from S3, then predicted",
                "",
                f"n x n Sentinel-2 L2A items of {size} x {size} px at 10 m{' (a whole MGRS tile)' if size == FULL_PX else ''} in "
                "Earth Search's layout in a local S3 server (SeaweedFS): one COG per band (B02, B03, B04, B08; SCL at 20 m), "
                "1024 px internal tiles, overviews, uint16, nodata 0, listed by a local STAC API (rustac); synthetic pixels. "
                "A region over them is materialised through the aws profile: `imagery_tiles` (source `earth-search`: STAC "
                "search, windowed reads over /vsis3/, 256 px tiles written to S3), then `predictions` (ONNX Runtime, the "
                "default margin, class tiles and the mosaic written to S3), each step in a process of its own. "
                f"`.venv/bin/python -m bench.full_tile --size {size} --grids {' '.join(map(str, grids))}`.",
                "",
                "| items | region px | tiles | step | wall s | Mpx/s | peak RSS MB |",
                "|---|---:|---:|---|---:|---:|---:|",
                *table,
                "",
                f"Peak RSS: the step's process and its children together, sampled every 0.1 s; target for predictions: "
                f"{TARGET_MB} MB. One run. Machine: {info['nproc']} cores ({info['cpu_model']}), 1-min load average "
                f"{info['loadavg_1min_at_start']} at the start, {os.getloadavg()[0]:.2f} at the end, Python {info['python']}, torch {info['torch']}, dagster {info['dagster']}, "
                f"GDAL {info['gdal']}, {info['date']}. Setup (not in the figures): items {build_s:.0f} s, model {train_s:.0f} s.",
            ]
        ),
    )
    return 0 if all(r["predictions"]["peak_mb"] <= TARGET_MB for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
