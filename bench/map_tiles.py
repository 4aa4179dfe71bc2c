"""Benchmark: map tile latency of the map server (geo_assets/map/), as a browser asks for tiles.

    .venv/bin/python -m bench.map_tiles [--tiles 24]

A synthetic region of 6 x 6 imagery tiles of 256 px at 10 m (15.4 km a side) is cut, a small FCN is
trained on it for two epochs and predicts it (the pipeline's own assets, in-process). The map server
(`python -m geo_assets.map`, uvicorn, one process) then serves it from local files and from a local
S3 server (SeaweedFS, the same objects); 256 px PNG tiles of the true-colour imagery and of the
predictions are fetched one at a time at zooms 12, 14 and 16 (up to --tiles per zoom, those over the
region): cold = the first request of each tile after the server starts, warm = the same tiles again.
Figures: median and p95 latency per store, layer, zoom and cold/warm, in milliseconds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from bench.common import REPO, machine_info, publish

MEASURES = ["bench/map_tiles.py", "geo_assets/map", "geo_assets/geo/store.py"]
ZOOMS = (12, 14, 16)
REGION_NAME, DATE, MODEL = "bench-map", "2024-06-01", "bench-map-model"
BBOX = (400000.0, 5120000.0, 400000.0 + 6 * 2560, 5120000.0 + 6 * 2560)


def build_world(store) -> str:
    """Imagery, labels, a two-epoch FCN and its predictions of the region; the model version."""
    import dagster as dg

    from geo_assets.assets.imagery import imagery_tiles
    from geo_assets.assets.labels import labels
    from geo_assets.assets.models import trained_model, training_set
    from geo_assets.assets.predictions import predictions
    from geo_assets.cli.commands import register
    from geo_assets.geo.regions import Region, load_catalogue, save_catalogue
    from geo_assets.partitions import region_date_key
    from resources.compute import LocalPoolCompute
    from resources.gate import ModelGate
    from resources.imagery import ImageryResource
    from resources.storage import ManifestIOManager, StorageResource
    from resources.training import InProcessTraining

    catalogue = load_catalogue(store)
    catalogue.add(Region(REGION_NAME, BBOX, "EPSG:32631", "synthetic", "synthetic", (DATE,)))
    save_catalogue(store, catalogue)
    storage = StorageResource(root=store.root)
    resources = {
        "storage": storage,
        "compute": LocalPoolCompute(workers=2),
        "io_manager": ManifestIOManager(storage=storage),
        "imagery": ImageryResource(),
        "gate": ModelGate(min_miou=0.0),
        "training": InProcessTraining(),
    }
    train = {
        "architecture": "fcn",
        "epochs": 2,
        "chips_per_epoch": 32,
        "chip_size": 64,
        "batch_size": 8,
        "hyperparameters": {"hidden_channels": 8},
    }
    with dg.instance_for_test() as instance:
        register(instance, regions=[REGION_NAME], models=[MODEL])
        key = region_date_key(REGION_NAME, DATE)

        def run(assets, partition, ops):
            result = dg.materialize(
                assets, partition_key=partition, resources=resources, instance=instance, run_config={"ops": ops}
            )
            assert result.success
            return result

        run([imagery_tiles], key, {})
        run([labels], REGION_NAME, {})
        version = run(
            [training_set, trained_model],
            MODEL,
            {"training_set": {"config": {"regions": [REGION_NAME]}}, "trained_model": {"config": train}},
        ).output_for_node("trained_model")["version"]
        run([predictions], key, {"predictions": {"config": {"model": MODEL, "version": version}}})
    return version


@contextmanager
def map_server(env: dict):
    import requests

    from devtools.emulators import free_port

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "geo_assets.map", "--port", str(port)],
        cwd=REPO,
        env={**os.environ, **env, "PYTHONPATH": str(REPO), "GEO_ASSETS_MAP_RATE": "100000"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if requests.get(f"{url}/healthz", timeout=2).ok:
                    break
            except requests.ConnectionError:
                time.sleep(0.2)
        else:
            raise RuntimeError("the map server did not start")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def map_tiles(z: int, limit: int):
    import morecantile
    from rasterio.warp import transform_bounds

    w, s, e, n = transform_bounds("EPSG:32631", "EPSG:4326", *BBOX)
    tiles = list(morecantile.tms.get("WebMercatorQuad").tiles(w, s, e, n, [z]))
    step = max(1, len(tiles) // limit)
    return tiles[::step][:limit]


def measure(url: str, version: str, limit: int) -> dict:
    """Latencies (ms) per layer, zoom and pass: a fresh server, so the first pass is cold."""
    import requests

    layers = {
        "imagery": f"tiles/imagery/{REGION_NAME}/{DATE}/true-colour",
        "predictions": f"tiles/predictions/{REGION_NAME}/{DATE}/{MODEL}/{version}",
    }
    out: dict = {}
    session = requests.Session()
    for state in ("cold", "warm"):
        for layer, path in layers.items():
            for z in ZOOMS:
                times = []
                for t in map_tiles(z, limit):
                    started = time.perf_counter()
                    response = session.get(f"{url}/{path}/{z}/{t.x}/{t.y}.png", timeout=60)
                    times.append((time.perf_counter() - started) * 1000)
                    assert response.status_code in (200, 404), response.text
                out[(layer, z, state)] = times
    return out


def summary(times: list[float]) -> tuple[float, float]:
    ordered = sorted(times)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def main(argv: list[str] | None = None) -> int:
    from devtools.emulators.s3 import seaweedfs
    from geo_assets.geo.store import Store, local_root, make_store

    ap = argparse.ArgumentParser(prog="python -m bench.map_tiles", description=__doc__.split("\n\n")[0])
    ap.add_argument("--tiles", type=int, default=24, help="map tiles per zoom (default 24)")
    args = ap.parse_args(argv)
    if not 1 <= args.tiles <= 256:
        ap.error("--tiles must be from 1 to 256")
    machine = machine_info()
    results = {}
    with tempfile.TemporaryDirectory(prefix="geo-assets-map-bench-") as tmp:
        local = Store(local_root(Path(tmp) / "storage"))
        version = build_world(local)
        with map_server({"GEO_ASSETS_PROFILE": "local", "GEO_ASSETS_STORAGE_ROOT": local.root}) as url:
            results["local"] = measure(url, version, args.tiles)
        key, secret = "bench-map-key", "bench-map-secret"
        with seaweedfs(Path(tmp) / "s3", ["bench-map"], key, secret) as server:
            s3 = make_store(
                "s3://bench-map/world",
                endpoint_url=server.endpoint_url,
                region="us-east-1",
                access_key_id=key,
                secret_access_key=secret,
            )
            for top in ("catalogue", "manifests", "imagery", "predictions", "models"):
                for k in local.list(top):
                    s3.write_bytes(k, local.read_bytes(k))
            env = {
                "GEO_ASSETS_PROFILE": "aws",
                "GEO_ASSETS_STORAGE_ROOT": s3.root,
                "AWS_ENDPOINT_URL_S3": server.endpoint_url,
                "AWS_REGION": "us-east-1",
                "AWS_ACCESS_KEY_ID": key,
                "AWS_SECRET_ACCESS_KEY": secret,
            }
            with map_server(env) as url:
                results["s3"] = measure(url, version, args.tiles)
    rows = []
    for store, found in results.items():
        for (layer, z, state), times in found.items():
            median, p95 = summary(times)
            rows.append(f"| {store} | {layer} | {z} | {state} | {len(times)} | {median:.1f} | {p95:.1f} |")
    section = "\n".join(
        [
            "## Map tiles",
            "",
            f"`python -m bench.map_tiles --tiles {args.tiles}`: 256 px PNG tiles from the map server (one uvicorn process), "
            "one request at a time, a region of 6 x 6 imagery tiles of 256 px; cold = first request after the server "
            f"starts. {machine['cpu_model']}, {machine['nproc']} CPUs, load {machine['loadavg_1min_at_start']} at start, "
            f"{machine['date']}.",
            "",
            "| store | layer | zoom | pass | tiles | median ms | p95 ms |",
            "|---|---|---|---|---|---|---|",
            *rows,
        ]
    )
    record = {
        "machine": machine,
        "results": {s: {f"{layer}/{z}/{st}": t for (layer, z, st), t in r.items()} for s, r in results.items()},
    }
    publish("map-tiles", MEASURES, REPO / "bench" / "results" / "map_tiles.json", record, section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
