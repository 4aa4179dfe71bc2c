"""imagery_tiles: a region's scene on one date, cut on the fixed grid into one COG per tile."""


from functools import partial

import dagster as dg
import numpy as np

from geo_assets.assets.common import catalogue, output, tag_run
from geo_assets.config import ImageryConfig
from geo_assets.geo.grid import TileGrid
from geo_assets.geo.sources import check_bands, get_source
from geo_assets.geo.tiling import cut_imagery_tile
from geo_assets.partitions import region_and_date, region_date_partitions
from resources.compute import LocalPoolCompute
from resources.storage import StorageResource


@dg.asset(partitions_def=region_date_partitions, group_name="imagery", kinds={"python", "cog"})
def imagery_tiles(
    context: dg.AssetExecutionContext, config: ImageryConfig, storage: StorageResource, compute: LocalPoolCompute
) -> dg.Output[dict]:
    """Read the source over the region's footprint and write one COG per grid tile."""
    region_name, date = region_and_date(context)
    store = storage.store()
    region = catalogue(store).get(region_name)
    source_name = config.source or region.source
    spec = get_source(source_name).spec(region)
    bands = check_bands(spec, config.bands)
    tag_run(context, region=region.name, date=date, source=source_name)

    grid = TileGrid(region.crs, spec.resolution, config.tile_size)
    tiles = grid.tiles(region.bbox)
    prefix = f"imagery/{region.name}/{date}/{source_name}-{config.tile_size}px-{'-'.join(bands)}"
    context.log.info(f"cutting {len(tiles)} tiles of {config.tile_size} px from source {source_name!r}")
    entries = compute.map(
        partial(cut_imagery_tile, store, source_name, region, date, bands, prefix), tiles, "imagery tiles", context.log.info
    )
    nodata = float(np.mean([e["nodata_fraction"] for e in entries]))
    manifest = {
        "region": region.name,
        "date": date,
        "source": source_name,
        "bands": bands,
        "crs": region.crs,
        "resolution": spec.resolution,
        "tile_size": config.tile_size,
        "dtype": spec.dtype,
        "nodata": None if spec.nodata is None else float(spec.nodata),
        "prefix": prefix,
        "tiles": entries,
    }
    clouds = [e["cloud_fraction"] for e in entries if "cloud_fraction" in e]
    return output(
        manifest,
        {
            "region": region.name,
            "source": source_name,
            "tile_count": len(entries),
            "bounds": dg.MetadataValue.json({"bbox": list(region.bbox), "crs": region.crs}),
            "crs": region.crs,
            "resolution_m": spec.resolution,
            "bands": ", ".join(bands),
            "nodata_fraction": round(nodata, 4),
            **({"cloud_fraction": round(float(np.mean(clouds)), 4)} if clouds else {}),
            "location": dg.MetadataValue.path(store.uri(prefix)),
        },
    )
