"""labels: a region's land-cover mask for training, on the same grid as its imagery."""

from functools import partial

import dagster as dg
import numpy as np

from geo_assets.assets.common import catalogue, output, tag_run
from geo_assets.assets.manifest_types import LabelsManifest
from geo_assets.assets.placement import op_tags
from geo_assets.config import LabelsConfig
from geo_assets.geo.labels import check_label_source
from geo_assets.geo.landcover import CLASSES
from geo_assets.geo.regions import check_size, validate_region_name
from geo_assets.geo.sources import get_source
from geo_assets.geo.tiling import cut_label_tile
from geo_assets.limits import max_tiles
from geo_assets.partitions import partition_key, regions_partitions
from resources import leases
from resources.compute import TileCompute
from resources.storage import StorageResource


@dg.asset(
    partitions_def=regions_partitions,
    group_name="imagery",
    kinds={"python", "cog"},
    code_version="1",
    op_tags=op_tags("labels"),
)
def labels(
    context: dg.AssetExecutionContext, config: LabelsConfig, storage: StorageResource, compute: TileCompute
) -> dg.Output[LabelsManifest]:
    """Synthetic truth or rasterised vector polygons, one uint8 class COG per tile (255: unlabelled)."""
    store = storage.store()
    with leases.writing(context, store, [partition_key(context, validate_region_name)]):  # one writer per region
        return _labels(context, config, store, compute)


def _labels(
    context: dg.AssetExecutionContext, config: LabelsConfig, store, compute: TileCompute
) -> dg.Output[LabelsManifest]:
    region = catalogue(store).get(partition_key(context, validate_region_name))
    source = check_label_source(config.source, region)
    spec = get_source(region.source).spec(region)  # labels follow the grid of the region's imagery
    tag_run(context, region=region.name, labels=source)

    grid = spec.grid(region.crs, config.tile_size)  # the source's own pixel lattice
    check_size(region, grid, max_tiles())  # arithmetic: a huge box fails here, not while listing its tiles
    tiles = grid.tiles(region.bbox)
    prefix = f"labels/{region.name}/{source}-{config.tile_size}px"
    entries = compute.map(
        partial(cut_label_tile, store, region, source, spec.resolution, prefix), tiles, "label tiles", context.log.info
    )
    counts = np.sum([e["class_counts"] for e in entries], axis=0)
    manifest: LabelsManifest = {
        "region": region.name,
        "source": source,
        "crs": region.crs,
        "resolution": spec.resolution,
        "origin": list(grid.origin),
        "tile_size": config.tile_size,
        "prefix": prefix,
        "tiles": entries,
    }
    return output(
        manifest,
        {
            "region": region.name,
            "label_source": source,
            "tile_count": len(entries),
            "labelled_fraction": round(float(np.mean([e["labelled_fraction"] for e in entries])), 4),
            "class_pixels": dg.MetadataValue.json(dict(zip(CLASSES, (int(c) for c in counts)))),
            "location": dg.MetadataValue.path(store.uri(prefix)),
        },
    )
