"""Benchmark: a CLI backfill of N region x date partitions through the daemon, against the same tile work
in a plain Python loop; the difference per partition is the platform's overhead.

    .venv/bin/python -m bench.backfill [--partitions 200] [--repeats 2] [--quick]

Setup (not timed), in a temporary directory: a Dagster home with the repository's dagster.yaml, a
one-tile synthetic region (256 px at 10 m), a small fcn trained as `landcover-unet` on a second region
and gated (GEO_ASSETS_MIN_MIOU=0), and `dagster dev` on 127.0.0.1. Then, alternately:

* backfill: `geo-assets backfill --region bench-backfill --from D1 --to DN --wait` in a fresh process,
  timed from its start to its exit: the checks before launch, the GraphQL launch, the daemon's backfill
  and queue, the run's processes (imagery_tiles, predictions and region_report of all N partitions in
  one run under BackfillPolicy.single_run), and every event written to SQLite.
* plain: the same work in this process with the same libraries and no Dagster: for each date the
  synthetic scene cut into its COG tile, the same model version predicting it through the predictions
  asset's own unit of inference (`PredictChunk`: the model loaded once per process, the default
  runtime), the mosaic, and the report's preview PNG; single-threaded, as the platform's steps are with
  one tile per partition.

overhead per partition = (backfill - plain) / N; the target is at most 0.5 s. Every partition's
predicted classes are compared pixel for pixel between the two. Results go to
bench/results/backfill.json and the section between the backfill markers in BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.common import CODE_LOCATION, machine_info, publish
from geo_assets.cli.demo import only_output

# What the figures measure (bench.stale): a change to any of these since the recorded commit makes them stale.
MEASURES = ["bench/backfill.py", *CODE_LOCATION]

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results" / "backfill.json"
REGION = "bench-backfill"
BOX = (400000.0, 5120000.0, 402560.0, 5122560.0)  # one tile of 256 px at 10 m, on the grid
HOLDOUT = ("bench-holdout", (440320.0, 5120000.0, 442880.0, 5122560.0))
FIRST = datetime.date(2023, 1, 1)
TARGET_S = 0.5
TRAIN = {
    "architecture": "fcn",
    "epochs": 1,
    "chips_per_epoch": 16,
    "chip_size": 64,
    "batch_size": 8,
    "hyperparameters": {"hidden_channels": 8},
}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _setup(tmp: Path) -> tuple[dict, object]:
    """The home, storage, regions and a gated model; returns the environment and the store."""
    import dagster as dg

    from geo_assets.assets.imagery import imagery_tiles
    from geo_assets.assets.labels import labels
    from geo_assets.assets.models import evaluation_set, model_evaluation, trained_model, training_set
    from geo_assets.cli.commands import register
    from geo_assets.geo.regions import Region, load_catalogue, save_catalogue
    from geo_assets.geo.store import Store, local_root
    from geo_assets.partitions import region_date_key
    from resources.profiles import resource_defs

    home = tmp / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text((REPO / "dagster.yaml").read_text())
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "GEO_ASSETS_STORAGE_ROOT": (tmp / "storage").as_uri(),
        "GEO_ASSETS_MIN_MIOU": "0",
    }
    os.environ.update({k: env[k] for k in ("DAGSTER_HOME", "GEO_ASSETS_STORAGE_ROOT", "GEO_ASSETS_MIN_MIOU")})
    store = Store(local_root(tmp / "storage"))
    catalogue = load_catalogue(store)
    for name, box in ((REGION, BOX), HOLDOUT):
        catalogue.add(Region(name, box, "EPSG:32631", "synthetic", "synthetic"))
    save_catalogue(store, catalogue)
    resources = resource_defs()
    with dg.DagsterInstance.get() as instance:
        register(instance, regions=catalogue.names(), models=["landcover-unet"])
        for name in (REGION, HOLDOUT[0]):
            for assets, key in (([imagery_tiles], region_date_key(name, "2022-12-31")), ([labels], name)):
                assert dg.materialize(assets, partition_key=key, resources=resources, instance=instance).success
        ops = {
            "training_set": {"config": {"regions": [REGION]}},
            "evaluation_set": {"config": {"regions": [HOLDOUT[0]]}},
            "trained_model": {"config": TRAIN},
        }
        assert dg.materialize(
            [training_set, evaluation_set, trained_model, model_evaluation],
            partition_key="landcover-unet",
            resources=resources,
            instance=instance,
            run_config={"ops": ops},
        ).success
    return env, store


def run_backfill(env: dict, url: str, dates: list[str]) -> float:
    started = time.perf_counter()
    proc = subprocess.run(
        [
            str(Path(sys.executable).parent / "geo-assets"),
            "backfill",
            "--region",
            REGION,
            "--from",
            dates[0],
            "--to",
            dates[-1],
            "--wait",
            "--url",
            url,
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - started
    if proc.returncode:
        raise RuntimeError(f"backfill failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return seconds


def run_plain(store, dates: list[str], prefix: str) -> float:
    """The backfill's tile work for every date, without Dagster."""
    from geo_assets.geo.margins import default_margin, with_neighbours
    from geo_assets.geo.mosaic import write_class_mosaic
    from geo_assets.geo.preview import class_colours, side_by_side_png, true_colour
    from geo_assets.geo.regions import load_catalogue
    from geo_assets.geo.sources import get_source
    from geo_assets.geo.tiling import cut_imagery_tile
    from geo_assets.ml import registry
    from geo_assets.ml.chunks import PredictChunk

    started = time.perf_counter()
    region = load_catalogue(store).get(REGION)
    record = registry.serving_version(store, "landcover-unet", 0.0)
    source, bands, normalise = get_source("synthetic"), record["bands"], registry.normalisation(record)
    tiles = source.spec(region).grid(region.crs, 256).tiles(region.bbox)  # the source's own lattice, as the asset
    for date in dates:
        scene = source.scene(region, date, bands=bands)
        entries = [cut_imagery_tile(store, scene, bands, f"{prefix}/imagery/{date}", t) for t in tiles]
        # The asset's own unit of inference (the model loaded once per process, in the default runtime).
        # With the asset's default margin, each tile read with its neighbours' pixels around it.
        work = PredictChunk(
            store,
            record["weights"],
            "auto",
            f"{prefix}/predictions/{date}",
            None,
            normalise=normalise,
            margin=default_margin(256),
        )
        predicted = work(with_neighbours(entries), lambda fn, items: list(map(fn, items)))
        mosaic = f"{prefix}/predictions/{date}/mosaic.tif"
        write_class_mosaic(store, [(p["path"], e["bounds"]) for p, e in zip(predicted, entries)], region.crs, mosaic)
        with store.env():
            rgb = true_colour([(store.path(e["path"]), e["bounds"]) for e in entries], bands)
            png = side_by_side_png(rgb, class_colours(store.path(mosaic), rgb.shape[:2]))
        store.write_bytes(f"{prefix}/reports/{date}/preview.png", png)
    return time.perf_counter() - started


def same_predictions(store, dates: list[str], prefix: str) -> None:
    import rasterio

    from geo_assets.ml import registry

    version = registry.serving_version(store, "landcover-unet", 0.0)["version"]
    for date in dates:
        manifest = store.read_json(only_output(store, "predictions", "landcover-unet", version, REGION, date))
        with store.env():
            for tile in manifest["tiles"]:
                plain = store.path(f"{prefix}/predictions/{date}/tiles/{tile['key']}.tif")
                with rasterio.open(store.path(tile["path"])) as a, rasterio.open(plain) as b:
                    if not np.array_equal(a.read(), b.read()):
                        raise AssertionError(f"predictions of {date} differ between the backfill and the plain loop")


def measure(partitions: int, repeats: int) -> dict:
    from devtools.dagster_dev import dagster_dev

    dates = [(FIRST + datetime.timedelta(days=i)).isoformat() for i in range(partitions)]
    with tempfile.TemporaryDirectory(prefix="bench-backfill-") as tmp:
        tmp = Path(tmp)
        started = time.perf_counter()
        env, store = _setup(tmp)
        rows = []
        with dagster_dev(env, tmp / "dev.log") as url:
            log(f"setup {time.perf_counter() - started:.1f} s")
            for i in range(repeats):
                backfill = run_backfill(env, url, dates)
                plain = run_plain(store, dates, f"plain/{i}")
                same_predictions(store, dates, f"plain/{i}")
                rows.append(
                    {"backfill": backfill, "plain": plain, "overhead_per_partition": (backfill - plain) / partitions}
                )
                log(
                    f"repeat {i + 1}/{repeats}: backfill {backfill:.1f} s, plain {plain:.1f} s, "
                    f"overhead {rows[-1]['overhead_per_partition']:.3f} s per partition"
                )
    return {"partitions": partitions, "rows": rows}


def render(info: dict, result: dict) -> str:
    rows, n = result["rows"], result["partitions"]
    med = {k: statistics.median(r[k] for r in rows) for k in ("backfill", "plain", "overhead_per_partition")}
    met = "met" if med["overhead_per_partition"] <= TARGET_S else "NOT met"
    return f"""## backfill: a CLI backfill of {n} region x date partitions

What is measured: `geo-assets backfill --region {REGION} --from {FIRST} --to ... --wait` ({n} dates of a
one-tile synthetic region; imagery_tiles, predictions and region_report) through `dagster dev` with the
repository's `dagster.yaml`, from the command's start to its exit, against a plain single-threaded loop
doing the same tile work with the same libraries (cut the tile, predict it with the same exported model,
mosaic, preview PNG). Predictions are equal pixel for pixel. Command:
`.venv/bin/python -m bench.backfill --partitions {n} --repeats {len(rows)}`.
Machine: {info["nproc"]} cores ({info["cpu_model"]}), {info["platform"]}, Python {info["python"]},
dagster {info["dagster"]}, torch {info["torch"]}; {info["date"]}; 1-min load average
{info["loadavg_1min_at_start"]} at the start.

| | median (s) |
| --- | --- |
| backfill (CLI to exit) | {med["backfill"]:.1f} |
| plain loop | {med["plain"]:.1f} |
| **overhead per partition** | **{med["overhead_per_partition"]:.3f}** (target <= {TARGET_S} s: {met}) |

Per repeat (backfill, plain): {", ".join(f"{r['backfill']:.1f}/{r['plain']:.1f}" for r in rows)} s. With
`BackfillPolicy.single_run()` the {n} partitions are one run: the run and step processes start once,
and what grows with N is the per-partition work inside the steps (manifests, run tags and three
materialisation events of each partition; the model is loaded once per process). Much of the fixed
part is Dagster's backfill daemon, which looks at backfills every 30 s: up to 30 s before the run is
requested and up to 30 s after it ends before the backfill is complete."""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.backfill", description=__doc__.split("\n\n")[0])
    ap.add_argument("--partitions", type=int, default=200, help="dates of the region backfilled (default 200)")
    ap.add_argument("--repeats", type=int, default=2, help="alternating backfill / plain pairs (default 2)")
    ap.add_argument("--quick", action="store_true", help="10 partitions once, to check that the benchmark works")
    args = ap.parse_args(argv)
    partitions, repeats = (10, 1) if args.quick else (args.partitions, args.repeats)
    if not 1 <= partitions <= 400 or not 1 <= repeats <= 20:
        ap.error("--partitions must be from 1 to 400 (the backfill limit) and --repeats from 1 to 20")
    info = machine_info()
    result = measure(partitions, repeats)
    publish("backfill", MEASURES, RESULTS, {"machine": info, **result}, render(info, result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
