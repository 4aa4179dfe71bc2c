"""imagery_tiles: a region's scene on one date, cut on the fixed grid into one COG per tile."""

from functools import partial

import dagster as dg
import numpy as np

from geo_assets.assets.common import catalogue, digest, each_partition, output, run_assets, tag_run
from geo_assets.assets.manifest_types import ImageryManifest
from geo_assets.assets.placement import op_tags
from geo_assets.config import ImageryConfig, PredictionConfig
from geo_assets.engine.batches import Each
from geo_assets.engine.ledger import TileLedger
from geo_assets.geo.acquisitions import variant
from geo_assets.geo.arrived_scenes import arrived_scene
from geo_assets.geo.regions import check_size
from geo_assets.geo.sources import DEFAULT_BANDS, Scene, check_bands, check_dates, get_source
from geo_assets.geo.tiling import cut_imagery_tile
from geo_assets.limits import max_tiles
from geo_assets.map.links import map_url
from geo_assets.ml import registry
from geo_assets.partitions import region_date_partitions
from resources.compute import TileCompute
from resources.gate import ModelGate
from resources.imagery import ImageryResource
from resources.storage import KEYED_BY_VARIANT, StorageResource


@dg.asset(
    partitions_def=region_date_partitions,
    group_name="imagery",
    kinds={"python", "cog"},
    code_version="1",
    op_tags=op_tags("imagery_tiles"),
    metadata={KEYED_BY_VARIANT: True},  # bands, tile sizes and sources of one acquisition live side by side
    backfill_policy=dg.BackfillPolicy.single_run(),  # a range of dates in one process: see docs/guide/launching.md, "Backfills"
)
def imagery_tiles(
    context: dg.AssetExecutionContext,
    config: ImageryConfig,
    storage: StorageResource,
    compute: TileCompute,
    imagery: ImageryResource,
    gate: dg.ResourceParam[ModelGate],
) -> dg.Output[ImageryManifest]:
    """Read the source over the region's footprint and write one COG per grid tile."""
    bands = _bands_for_run(context, config, storage, gate)  # before any partition writes
    return each_partition(
        context, lambda region, date, _: _imagery_tiles(context, config, bands, storage, compute, imagery, region, date)
    )


def _bands_for_run(context, config: ImageryConfig, storage, gate) -> list[str]:
    """The bands to cut. In a run that also predicts, they must hold the bands of the predicting model
    (unset, they are those bands): a run whose steps cannot agree is refused before anything is written."""
    if "predictions" not in run_assets(context):
        return list(config.bands or DEFAULT_BANDS)
    asked = PredictionConfig(**context.run.run_config.get("ops", {}).get("predictions", {}).get("config", {}))
    store = storage.store()
    record = registry.resolve_version(
        store, asked.model, asked.version, gate.min_miou, registry.list_versions(store, asked.model)
    )
    if config.bands is None:
        return list(record["bands"])
    missing = [b for b in record["bands"] if b not in config.bands]
    if missing:
        raise ValueError(
            f"imagery_tiles config bands [{', '.join(config.bands)}] lack {', '.join(missing)}, which predictions model "
            f"{asked.model} version {record['version']} reads ([{', '.join(record['bands'])}]) in this same run: "
            "set imagery_tiles bands to the model's bands (or leave them unset), or predict with another model"
        )
    return list(config.bands)


def _imagery_tiles(
    context, config: ImageryConfig, bands, storage, compute, imagery, region_name: str, date: str
) -> dg.Output[ImageryManifest]:
    store = storage.store()
    region = catalogue(store).get(region_name)
    if config.arrivals:  # the scene that landed in the storage: its items say the source
        scene: Scene = arrived_scene(
            store, config.arrivals, region, source=config.source, bands=bands, max_cloud=config.max_cloud
        )
        source_name, bands = scene.spec.source, list(scene.spec.bands)
        # `arrivals-folder`: the sensor's `geo-assets/arrivals` tag (the versions it asked for) stays whole
        tag_run(context, region=region.name, date=date, source=source_name, arrivals_folder=config.arrivals)
    else:
        source_name = config.source or region.source
        source = get_source(source_name)
        bands = check_bands(source.spec(region), bands)
        check_dates(source_name, region, [date])  # a sample is one scene: other dates have no imagery
        check_size(region, source.spec(region).grid(region.crs, config.tile_size), max_tiles())  # before the search
        tag_run(context, region=region.name, date=date, source=source_name)
        # One search per run; every tile then reads its windows from this plan.
        scene = source.scene(region, date, imagery.settings(), bands=bands, max_cloud=config.max_cloud)
    spec = scene.spec
    described = scene.describe()
    if described.get("items"):
        ids = ", ".join(i["id"] for i in described["items"])
        context.log.info(f"{len(described['items'])} {described['collection']} item(s), in mosaic order: {ids}")

    grid = spec.grid(region.crs, config.tile_size)  # the source's own pixel lattice
    check_size(region, grid, max_tiles())  # arithmetic: a huge box fails here, not while listing its tiles
    tiles = grid.tiles(region.bbox)
    # The items read (which a cloud limit or a newly published scene changes) are part of the path,
    # so a rerun that fails halfway never mixes its tiles into an earlier, different output.
    scene_part = f"-{digest(described)[:8]}" if described.get("items") else ""
    prefix = f"imagery/{region.name}/{date}/{source_name}-{config.tile_size}px-{'-'.join(bands)}{scene_part}"
    context.log.info(f"cutting {len(tiles)} tiles of {config.tile_size} px from source {source_name!r}")
    entries = compute.map_tiles(
        context,
        Each(partial(cut_imagery_tile, store, scene, bands, prefix)),
        tiles,
        label="imagery tiles",
        ledger=TileLedger(store, prefix),
    )
    nodata = float(np.mean([e["nodata_fraction"] for e in entries]))
    if described.get("items") and nodata == 1.0:  # items over the region, yet not one pixel: never published
        raise ValueError(
            f"no valid pixels in any of the {len(entries)} tiles of region {region.name!r} on {date}: the "
            f"{source_name} item(s) {', '.join(i['id'] for i in described['items'])} cover it, but their pixels "
            "there are all nodata; nothing was published"
        )
    manifest: ImageryManifest = {
        "region": region.name,
        "date": date,
        "variant": variant(source_name, config.tile_size, bands),  # its manifest's key: variants never collide
        "source": source_name,
        "bands": bands,
        "crs": region.crs,
        "resolution": spec.resolution,
        "origin": list(grid.origin),
        "tile_size": config.tile_size,
        "dtype": spec.dtype,
        "nodata": None if spec.nodata is None else float(spec.nodata),
        "prefix": prefix,
        "tiles": entries,
    }
    if described:
        manifest["scene"] = described  # which items were read, in mosaic order
    clouds = [e["cloud_fraction"] for e in entries if "cloud_fraction" in e]
    return output(
        manifest,
        {
            "region": region.name,
            "source": source_name,
            "variant": variant(source_name, config.tile_size, bands),
            "tile_count": len(entries),
            "bounds": dg.MetadataValue.json({"bbox": list(region.bbox), "crs": region.crs}),
            "crs": region.crs,
            "resolution_m": spec.resolution,
            "bands": ", ".join(bands),
            "nodata_fraction": round(nodata, 4),
            **({"cloud_fraction": round(float(np.mean(clouds)), 4)} if clouds else {}),
            **({"max_cloud": config.max_cloud, "scene": dg.MetadataValue.json(described)} if described else {}),
            "location": dg.MetadataValue.path(store.uri(prefix)),
            "map": dg.MetadataValue.url(map_url(region.name, date)),  # the map server's view of these tiles
        },
    )
