"""predictions: batched inference over a region's tiles with a chosen model version."""

import time

import dagster as dg
import numpy as np

from geo_assets.assets.common import (
    catalogue,
    digest,
    each_partition,
    materialised_in_run,
    output,
    pick_imagery,
    tag_run,
)
from geo_assets.assets.manifest_types import PredictionsManifest
from geo_assets.assets.placement import op_tags
from geo_assets.config import PredictionConfig
from geo_assets.engine.ledger import TileLedger
from geo_assets.geo import acquisitions
from geo_assets.geo.landcover import CLASSES
from geo_assets.geo.manifests import ImageryManifest
from geo_assets.geo.margins import check_margin, default_margin, with_neighbours
from geo_assets.geo.mosaic import write_class_mosaic
from geo_assets.map.links import map_url
from geo_assets.ml import registry
from geo_assets.ml.chunks import PredictChunk
from geo_assets.ml.memory import check_prediction_batch
from geo_assets.partitions import region_date_partitions
from geo_assets.triggers.automation import FOLLOW_SERVING_MODEL
from resources.compute import TileCompute
from resources.gate import ModelGate
from resources.storage import KEYED_BY_MODEL_VERSION, StorageResource

CODE_VERSION = "2"  # bump when a change to this module changes what predictions store (2: margins)


@dg.asset(
    partitions_def=region_date_partitions,
    group_name="predictions",
    kinds={"pytorch", "cog"},
    code_version=CODE_VERSION,
    pool="gpu",  # GPU steps take a slot of the deployment's gpu pool
    op_tags=op_tags("predictions"),
    # The model is chosen by run config; at asset level predictions follow the models' evaluations.
    # The imagery is read by the step, not handed in: it chooses the variant (bands, tile size) it needs.
    deps=[dg.AssetDep("model_evaluation", partition_mapping=dg.AllPartitionMapping()), "imagery_tiles"],
    metadata={KEYED_BY_MODEL_VERSION: True},
    backfill_policy=dg.BackfillPolicy.single_run(),  # a range of dates in one process: see docs/guide/launching.md, "Backfills"
    automation_condition=FOLLOW_SERVING_MODEL,  # acts only while the predictions_follow_serving_model sensor runs
)
def predictions(
    context: dg.AssetExecutionContext,
    config: PredictionConfig,
    storage: StorageResource,
    compute: TileCompute,
    gate: dg.ResourceParam[ModelGate],
) -> dg.Output[PredictionsManifest]:
    """Class COGs aligned pixel for pixel with the imagery tiles, plus a mosaic, under the model version's path."""
    cut = materialised_in_run(context, "imagery_tiles")
    return each_partition(
        context, lambda region, date, _: _predictions(context, config, storage, compute, gate, cut, region, date)
    )


def choose_imagery(
    store, region: str, date: str, bands: list[str], cut: dict | None, tile_size=None, source=None
) -> tuple[str, ImageryManifest]:
    """The imagery variant to predict: the one this run cut, else the stored one holding the model's bands
    (of the tile size and source asked for)."""
    if cut is not None:
        key = acquisitions.imagery_key(region, date, cut["variant"])
        return key, store.read_json(key)
    return pick_imagery(
        store,
        region,
        date,
        bands=bands,
        tile_size=tile_size,
        source=source,
        prefer_source=catalogue(store).get(region).source,
    )


def _predictions(
    context, config: PredictionConfig, storage, compute, gate, cut: dict, region: str, date: str
) -> dg.Output[PredictionsManifest]:
    store = storage.store()
    if f"{date}|{region}" not in cut and not acquisitions.imagery_variants(store, region, date):  # before the model
        raise FileNotFoundError(
            f"no imagery_tiles for region {region!r} on {date}: materialise imagery_tiles[{date}|{region}] first"
        )
    versions = registry.list_versions(store, config.model)  # one listing: the version asked for and the serving one
    record = registry.resolve_version(store, config.model, config.version, gate.min_miou, versions)
    version = record["version"]
    serving = registry.serving_id(store, config.model, gate.min_miou, versions)
    imagery_key, imagery_tiles = choose_imagery(
        store, region, date, record["bands"], cut.get(f"{date}|{region}"), config.tile_size, config.source
    )
    tag_run(
        context, region=region, date=date, source=imagery_tiles["source"], model=config.model, model_version=version
    )
    if not set(record["bands"]) <= set(imagery_tiles["bands"]):
        raise ValueError(
            f"model {config.model} {version} expects bands {record['bands']}, imagery has {imagery_tiles['bands']}; "
            "materialise imagery_tiles with the model's bands"
        )
    margin = check_margin(
        default_margin(imagery_tiles["tile_size"]) if config.margin is None else config.margin,
        imagery_tiles["tile_size"],
    )  # before any tile is read
    check_prediction_batch(
        config.batch_size, imagery_tiles["tile_size"], margin, len(record["bands"])
    )  # memory, likewise
    tiles_dir = imagery_tiles["prefix"].rsplit("/", 1)[1]  # the imagery's source/tiling, so variants never collide
    # The margin changes the classes near tile edges: outputs of another margin never overwrite these.
    prefix = f"predictions/{config.model}/{version}/{region}/{date}/{tiles_dir}/margin-{margin}px"
    started = time.perf_counter()
    # Chunks name the model by its key: each process that runs one (here, or a Dask worker) loads it once,
    # in the inference runtime asked for, and normalises tiles as the version was trained.
    work = PredictChunk(
        store,
        record["weights"],
        config.device,
        prefix,
        config.batch_size,
        normalise=registry.normalisation(record),
        runtime=config.inference_runtime,
        margin=margin,
    )
    # Each tile names its neighbours, so a chunk of tiles (here or on a Dask worker) reads their margins.
    tiles = with_neighbours(imagery_tiles["tiles"]) if margin else imagery_tiles["tiles"]
    entries = compute.map_tiles(context, work, tiles, label="predicted tiles", ledger=TileLedger(store, prefix))
    mosaic = f"{prefix}/mosaic.tif"
    bounds = [t["bounds"] for t in imagery_tiles["tiles"]]
    write_class_mosaic(store, [(e["path"], b) for e, b in zip(entries, bounds)], imagery_tiles["crs"], mosaic)
    counts = np.sum([e["class_counts"] for e in entries], axis=0)
    manifest: PredictionsManifest = {
        "region": region,
        "date": date,
        "model": config.model,
        "version": version,
        # With model and version, these key the manifest: another variant or margin never replaces it.
        "variant": acquisitions.variant_of(imagery_tiles),
        "margin": margin,
        "imagery": imagery_key,
        "imagery_version": digest(imagery_tiles),
        "inference_runtime": work.inference().get("runtime"),
        "source": imagery_tiles["source"],
        "crs": imagery_tiles["crs"],
        "resolution": imagery_tiles["resolution"],
        "prefix": prefix,
        "mosaic": mosaic,
        "tiles": entries,
        "class_counts": dict(zip(CLASSES, (int(c) for c in counts))),
    }
    return output(
        manifest,
        {
            "region": region,
            "source": imagery_tiles["source"],
            "model": config.model,
            "version": version,
            "variant": acquisitions.variant_of(imagery_tiles),
            "serving": version == serving,  # the partition's prediction, when its model is asked for by name
            "tile_count": len(entries),
            "margin_px": margin,
            "seconds": round(time.perf_counter() - started, 2),
            "inference": dg.MetadataValue.json(work.inference()),  # runtime, batch size, streams, threads
            "mosaic": dg.MetadataValue.path(store.uri(mosaic)),
            "location": dg.MetadataValue.path(store.uri(prefix)),
            "map": dg.MetadataValue.url(
                map_url(region, date, config.model, version)
            ),  # over the imagery, with a legend
        },
    )
