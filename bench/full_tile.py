"""Benchmark: predicting one full-size Sentinel-2 tile (10980 x 10980 px at 10 m) served from S3.

    .venv/bin/python -m bench.full_tile

A synthetic region the size of a Sentinel-2 MGRS tile (109.8 km square, EPSG:32631) is cut into
256 px imagery tiles stored in a local S3 server (SeaweedFS) through the aws profile. Then
`predictions` is materialised for it, reading every tile from S3 and writing class tiles and the
mosaic back; its wall time, throughput and the process's peak resident memory during that run
are reported (target: peak <= 2 GiB). Setup is timed separately and not part of the figures.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bench.common import REPO, machine_info, peak_mb, reset_peak, write_section

SIDE_PX = 10980  # a Sentinel-2 L2A tile at 10 m
ORIGIN = (156 * 2560.0, 1953 * 2560.0)  # on the 256 px x 10 m grid, south of the built-in regions
REGION, DATE, MODEL = "s2-full-tile", "2024-06-01", "bench-unet"
TARGET_MB = 2048


def main() -> int:
    from devtools.emulators.s3 import seaweedfs

    work = Path(tempfile.mkdtemp(prefix="geo-assets-full-tile-"))
    try:
        with seaweedfs(work / "s3", ["bench"], "bench-key", "bench-secret-key") as s3:
            home = work / "home"
            home.mkdir()
            shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
            os.environ.update(
                GEO_ASSETS_PROFILE="aws", GEO_ASSETS_STORAGE_ROOT="s3://bench/full-tile", DAGSTER_HOME=str(home),
                AWS_ENDPOINT_URL_S3=s3.endpoint_url, AWS_ACCESS_KEY_ID=s3.access_key,
                AWS_SECRET_ACCESS_KEY=s3.secret_key, AWS_REGION=s3.region,
            )
            return run(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _run(defs, instance, job, key, ops, selection=None) -> float:
    import dagster as dg

    t0 = time.perf_counter()
    result = defs.resolve_job_def(job).execute_in_process(
        run_config={"ops": ops, "loggers": {"console": {"config": {"log_level": "WARNING"}}}},
        instance=instance, partition_key=key,
        asset_selection=[dg.AssetKey(a) for a in selection] if selection else None,
    )
    if not result.success:
        raise RuntimeError(f"{job} {key} failed")
    return time.perf_counter() - t0


def run(work: Path) -> int:
    import dagster as dg

    from geo_assets.cli import register
    from geo_assets.definitions import defs
    from geo_assets.geo.regions import Region, load_catalogue, save_catalogue
    from geo_assets.partitions import region_date_key
    from resources.profiles import resource_defs

    store = resource_defs()["storage"].store()
    catalogue = load_catalogue(store)
    x, y = ORIGIN
    catalogue.add(Region(REGION, (x, y, x + SIDE_PX * 10.0, y + SIDE_PX * 10.0), "EPSG:32631", "synthetic"))
    save_catalogue(store, catalogue)
    instance = dg.DagsterInstance.get()
    register(instance, regions=catalogue.names(), models=[MODEL])

    setup = {}
    print(f"setup: cutting {REGION} into 256 px tiles in {store.root} ...", flush=True)
    setup["imagery_tiles"] = _run(defs, instance, "imagery_job", region_date_key(REGION, DATE), {})
    train_key = region_date_key("synth-train-a", DATE)
    setup["training"] = (
        _run(defs, instance, "imagery_job", train_key, {})
        + _run(defs, instance, "labels_job", "synth-train-a", {})
        + _run(defs, instance, "training_job", MODEL,
               {"trained_model": {"config": {"regions": ["synth-train-a"], "dates": [DATE], "epochs": 1,
                                             "chips_per_epoch": 16}}}, selection=["trained_model"])
    )
    version = store.read_json(f"manifests/trained_model/{MODEL}.json")["version"]
    tiles = len(store.read_json(f"manifests/imagery_tiles/region={REGION}/date={DATE}.json")["tiles"])
    print(f"setup done ({', '.join(f'{k} {v:.0f} s' for k, v in setup.items())}); predicting {tiles} tiles ...", flush=True)

    reset_ok = reset_peak()
    seconds = _run(defs, instance, "prediction_job", region_date_key(REGION, DATE),
                   {"predictions": {"config": {"model": MODEL, "version": version}}}, selection=["predictions"])
    peak = peak_mb(reset_ok)
    mpx = tiles * 256 * 256 / 1e6
    info = machine_info()
    figures = {"tiles": tiles, "mpx": round(mpx, 1), "seconds": round(seconds, 1), "mpx_per_s": round(mpx / seconds, 3),
               "peak_rss_mb": round(peak), "target_mb": TARGET_MB, "setup_s": {k: round(v, 1) for k, v in setup.items()},
               "machine": info}
    print(json.dumps(figures, indent=1))
    (REPO / "bench" / "results").mkdir(parents=True, exist_ok=True)
    (REPO / "bench" / "results" / "full_tile.json").write_text(json.dumps(figures, indent=1))
    write_section("full-tile", "\n".join([
        "## predictions of one full-size Sentinel-2 tile, served from S3",
        "",
        f"A synthetic region of {SIDE_PX} x {SIDE_PX} px at 10 m (one Sentinel-2 MGRS tile; EPSG:32631) cut into "
        f"{tiles} tiles of 256 px ({mpx:.1f} Mpx with the grid's overhang) stored in a local S3 server (SeaweedFS) "
        "through the aws profile; `predictions` reads every tile from S3 (GDAL /vsis3/) and writes class tiles "
        "and the mosaic back. `make bench-full-tile` or `.venv/bin/python -m bench.full_tile`.",
        "",
        "| tiles | Mpx | wall s | Mpx/s | peak RSS MB | target MB |",
        "|---:|---:|---:|---:|---:|---:|",
        f"| {tiles} | {mpx:.1f} | {seconds:.1f} | {mpx / seconds:.2f} | {peak:.0f} | {TARGET_MB} |",
        "",
        f"Peak RSS is the process's high-water mark during the run ({'reset just before it' if reset_ok else 'not resettable: since process start'}), "
        "torch and Dagster included. One run. Machine: "
        f"{info['nproc']} cores ({info['cpu_model']}), Python {info['python']}, torch {info['torch']}, "
        f"dagster {info['dagster']}, GDAL {info['gdal']}, {info['date']}. Setup (not in the figures): "
        + ", ".join(f"{k} {v:.0f} s" for k, v in setup.items()) + ".",
    ]))
    return 0 if peak <= TARGET_MB else 1


if __name__ == "__main__":
    sys.exit(main())
