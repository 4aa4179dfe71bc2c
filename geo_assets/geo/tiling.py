"""Tile work units: cut one imagery or label tile and store it as a COG.

Each is a top-level function of plain, picklable arguments so that any compute backend (a local
pool now, a Dask cluster later) can run it; each returns a small manifest entry, never pixels.
"""

from __future__ import annotations

import numpy as np

from geo_assets.geo.cog import write_cog
from geo_assets.geo.grid import Tile
from geo_assets.geo.integrity import pixel_digest
from geo_assets.geo.labels import holdout_tile, label_tile
from geo_assets.geo.landcover import CLASSES, IGNORE
from geo_assets.geo.manifests import ImageryTile, LabelTile
from geo_assets.geo.regions import Region
from geo_assets.geo.sources import Scene, check_bands
from geo_assets.geo.store import Store


def cut_imagery_tile(store: Store, scene: Scene, bands: list[str], prefix: str, tile: Tile) -> ImageryTile:
    """Read one tile of a scene (planned once per run by its source) and store it as a COG."""
    spec = scene.spec
    bands = check_bands(spec, bands)
    window = scene.read(tile.bounds, bands)
    key = f"{prefix}/{tile.key}.tif"
    with store.writing(key) as tmp:
        write_cog(tmp, window.data, scene.crs, tile.transform, spec.nodata, bands)
    entry: ImageryTile = {
        "key": tile.key,
        "path": key,
        "bounds": list(tile.bounds),
        "digest": pixel_digest(window.data),
        # Rounded, but never to 1 while one pixel is valid: 1 means none (imagery_tiles refuses all-nodata items).
        "nodata_fraction": min(round(1.0 - float(window.valid.mean()), 6), 0.999999 if window.valid.any() else 1.0),
    }
    if window.cloud is not None:
        cloud_key = f"{prefix}/{tile.key}.cloud.tif"
        with store.writing(cloud_key) as tmp:
            write_cog(tmp, window.cloud.astype(np.uint8), scene.crs, tile.transform, None, ["cloud"])
        entry["cloud_path"] = cloud_key
        entry["cloud_digest"] = pixel_digest(window.cloud)
        entry["cloud_fraction"] = round(float(window.cloud.mean()), 6)
    return entry


def cut_label_tile(store: Store, region: Region, source: str, resolution: float, prefix: str, tile: Tile) -> LabelTile:
    mask = label_tile(region, source, tile, resolution)
    key = f"{prefix}/{tile.key}.tif"
    with store.writing(key) as tmp:
        write_cog(tmp, mask, region.crs, tile.transform, IGNORE, ["class"])
    counts = np.bincount(mask.ravel(), minlength=256)
    entry: LabelTile = {
        "key": tile.key,
        "path": key,
        "bounds": list(tile.bounds),
        "digest": pixel_digest(mask),
        "labelled_fraction": round(1.0 - counts[IGNORE] / mask.size, 6),
        "class_counts": [int(c) for c in counts[: len(CLASSES)]],
    }
    holdout = holdout_tile(region, source, tile)
    if holdout is not None and (holdout != IGNORE).any():  # labels never trained on, scored in reports
        holdout_key = f"{prefix}/{tile.key}.holdout.tif"
        with store.writing(holdout_key) as tmp:
            write_cog(tmp, holdout, region.crs, tile.transform, IGNORE, ["class"])
        entry["holdout_path"] = holdout_key
        entry["holdout_digest"] = pixel_digest(holdout)
        entry["holdout_class_counts"] = [int(c) for c in np.bincount(holdout.ravel(), minlength=256)[: len(CLASSES)]]
    return entry
