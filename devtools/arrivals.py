"""Scenes that land in a store as a provider delivers them, for tests, the soak and the benchmark.

`write_scene` writes a made-up Sentinel-2 L2A scene the way Earth Search lays one out (band COGs
named by Earth Search's asset keys, an SCL at 20 m, the +1000 offset declared by the processing
baseline), then its STAC item last, with hrefs relative to the item: the item's arrival says the
scene is complete. It returns the DN it wrote so a test can compute the pixels it expects.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
from affine import Affine

from geo_assets.geo.cog import write_cog
from geo_assets.geo.stac import region_footprint_wgs84
from geo_assets.geo.store import Store

BANDS = {"blue": "B02", "green": "B03", "red": "B04", "nir": "B08"}
SCL_CLASSES = {4: 0.55, 5: 0.15, 8: 0.1, 9: 0.05, 3: 0.05, 10: 0.05, 0: 0.05}


def scene_arrays(bbox, resolution: float, seed: int, dn_add: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """({band: DN}, SCL at twice the pixel size) over `bbox`, deterministic in `seed`."""
    rows, cols = int(round((bbox[3] - bbox[1]) / resolution)), int(round((bbox[2] - bbox[0]) / resolution))
    rng = np.random.default_rng(seed)
    values, p = zip(*SCL_CLASSES.items())
    scl = rng.choice(np.array(values, dtype=np.uint8), size=(rows // 2, cols // 2), p=np.array(p) / sum(p))
    nodata = np.kron(scl == 0, np.ones((2, 2), dtype=bool))
    dn = {b: np.where(nodata, 0, rng.integers(200, 5000, size=(rows, cols)) + dn_add).astype(np.uint16) for b in BANDS}
    return dn, scl


def write_scene(
    store: Store, folder: str, item_id: str, bbox, crs: str, *, date: str, seed: int = 0, cloud: float = 10.0,
    baseline: str = "05.00", dn_add: int = 1000, resolution: float = 10.0,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Write the band COGs under `folder/item_id/`, then the item at `folder/item_id.json`."""
    dn, scl = scene_arrays(bbox, resolution, seed, dn_add)
    transform = Affine(resolution, 0.0, bbox[0], 0.0, -resolution, bbox[3])
    assets = {}
    with tempfile.TemporaryDirectory(prefix="scene-") as tmp:
        files = {**{band: (name, dn[band], transform) for band, name in BANDS.items()},
                 "scl": ("SCL", scl, transform * Affine.scale(2.0))}
        for asset, (name, array, t) in files.items():
            local = Path(tmp, f"{name}.tif")
            write_cog(local, array, crs, t, 0, blocksize=128)
            store.write_bytes(f"{folder}/{item_id}/{name}.tif", local.read_bytes())
            raster = {"nodata": 0, "data_type": str(array.dtype)}
            if asset != "scl":
                raster.update(scale=0.0001, offset=-0.1)
            assets[asset] = {"href": f"./{item_id}/{name}.tif", "type": "image/tiff; application=geotiff; profile=cloud-optimized",
                             "roles": ["data"], "raster:bands": [raster]}
    footprint = region_footprint_wgs84(bbox, crs, points_per_side=4)
    ring = np.array(footprint["coordinates"][0])
    item = {
        "type": "Feature", "stac_version": "1.0.0", "id": item_id, "collection": "sentinel-2-l2a",
        "geometry": footprint,
        "bbox": [float(ring[:, 0].min()), float(ring[:, 1].min()), float(ring[:, 0].max()), float(ring[:, 1].max())],
        "properties": {"datetime": f"{date}T10:30:00Z", "eo:cloud_cover": cloud, "s2:processing_baseline": baseline,
                       "proj:code": crs, "platform": "sentinel-2a"},
        "links": [], "assets": assets,
    }
    store.write_bytes(f"{folder}/{item_id}.json", json.dumps(item).encode())
    return dn, scl


def write_item(store: Store, key: str, payload: bytes = b"{}") -> None:
    """A stand-in item (content unread by the sensor), for listing tests and the benchmark."""
    store.write_bytes(key, payload)
