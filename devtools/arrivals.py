"""Scenes that land in a store as a provider delivers them, for tests, the soak and the benchmark.

`write_scene` writes a made-up Sentinel-2 L2A scene the way Earth Search lays one out (band COGs
named by Earth Search's asset keys, an SCL at 20 m, the +1000 offset declared by the processing
baseline), then its STAC item last, with hrefs relative to the item: the item's arrival says the
scene is complete. It returns the DN it wrote so a test can compute the pixels it expects.
`write_landsat_scene` does the same for a Landsat Collection 2 Level-2 scene in USGS's layout (pixel
corners on 15 + 30k m), from the real Landsat 8 sample clip.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine

from geo_assets.geo import sample
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
    store: Store,
    folder: str,
    item_id: str,
    bbox,
    crs: str,
    *,
    date: str,
    seed: int = 0,
    cloud: float = 10.0,
    baseline: str = "05.00",
    dn_add: int = 1000,
    resolution: float = 10.0,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Write the band COGs under `folder/item_id/`, then the item at `folder/item_id.json`."""
    dn, scl = scene_arrays(bbox, resolution, seed, dn_add)
    transform = Affine(resolution, 0.0, bbox[0], 0.0, -resolution, bbox[3])
    assets = {}
    with tempfile.TemporaryDirectory(prefix="scene-") as tmp:
        files = {
            **{band: (name, dn[band], transform) for band, name in BANDS.items()},
            "scl": ("SCL", scl, transform * Affine.scale(2.0)),
        }
        for asset, (name, array, t) in files.items():
            local = Path(tmp, f"{name}.tif")
            write_cog(local, array, crs, t, 0, blocksize=128)
            store.write_bytes(f"{folder}/{item_id}/{name}.tif", local.read_bytes())
            raster = {"nodata": 0, "data_type": str(array.dtype)}
            if asset != "scl":
                raster.update(scale=0.0001, offset=-0.1)
            assets[asset] = {
                "href": f"./{item_id}/{name}.tif",
                "type": "image/tiff; application=geotiff; profile=cloud-optimized",
                "roles": ["data"],
                "raster:bands": [raster],
            }
    footprint = region_footprint_wgs84(bbox, crs, points_per_side=4)
    ring = np.array(footprint["coordinates"][0])
    item = {
        "type": "Feature",
        "stac_version": "1.0.0",
        "id": item_id,
        "collection": "sentinel-2-l2a",
        "geometry": footprint,
        "bbox": [float(ring[:, 0].min()), float(ring[:, 1].min()), float(ring[:, 0].max()), float(ring[:, 1].max())],
        "properties": {
            "datetime": f"{date}T10:30:00Z",
            "eo:cloud_cover": cloud,
            "s2:processing_baseline": baseline,
            "proj:code": crs,
            "platform": "sentinel-2a",
        },
        "links": [],
        "assets": assets,
    }
    store.write_bytes(f"{folder}/{item_id}.json", json.dumps(item).encode())
    return dn, scl


LANDSAT_FILES = {"blue": "SR_B2", "green": "SR_B3", "red": "SR_B4", "nir08": "SR_B5", "qa_pixel": "QA_PIXEL"}


def write_landsat_scene(
    store: Store,
    folder: str,
    item_id: str,
    *,
    date: str,
    seed: int = 11,
    cloud: float = 12.0,
) -> tuple[dict[str, np.ndarray], Affine, str]:
    """A Landsat 8 C2 L2 scene from the sample clip `landsat8_224078.tif` (EPSG:32621, 30 m, corners on
    15 + 30k m) as USGS names its files, with a made-up NIR and QA_PIXEL (as the STAC emulator makes
    them), COGs under `folder/item_id/`, then the item at `folder/item_id.json`.
    Returns ({asset key: DN}, the COGs' transform, their CRS)."""
    from devtools.emulators.stac_data import synthetic_nir, synthetic_qa

    with rasterio.open(sample.sample_path("landsat8_224078.tif")) as src:
        blue, green, red = src.read()
        transform, crs = src.transform, src.crs.to_string()
    dn = {"blue": blue, "green": green, "red": red, "nir08": synthetic_nir(green, red)}
    dn["qa_pixel"] = synthetic_qa(blue.shape, seed, (blue == 0) | (green == 0) | (red == 0))
    assets = {}
    with tempfile.TemporaryDirectory(prefix="scene-") as tmp:
        for asset, name in LANDSAT_FILES.items():
            nodata = 1 if asset == "qa_pixel" else 0
            local = Path(tmp, f"{item_id}_{name}.TIF")
            write_cog(local, dn[asset], crs, transform, nodata, blocksize=128)
            store.write_bytes(f"{folder}/{item_id}/{local.name}", local.read_bytes())
            raster = {"nodata": nodata, "data_type": "uint16"}
            if asset != "qa_pixel":
                raster.update(scale=2.75e-05, offset=-0.2)
            assets[asset] = {
                "href": f"./{item_id}/{local.name}",
                "type": "image/vnd.stac.geotiff; cloud-optimized=true",
                "roles": ["data"],
                "raster:bands": [raster],
            }
    rows, cols = blue.shape
    bbox = (transform.c, transform.f + transform.e * rows, transform.c + transform.a * cols, transform.f)
    footprint = region_footprint_wgs84(bbox, crs, points_per_side=4)
    ring = np.array(footprint["coordinates"][0])
    item = {
        "type": "Feature",
        "stac_version": "1.0.0",
        "id": item_id,
        "collection": "landsat-c2l2-sr",
        "geometry": footprint,
        "bbox": [float(ring[:, 0].min()), float(ring[:, 1].min()), float(ring[:, 0].max()), float(ring[:, 1].max())],
        "properties": {
            "datetime": f"{date}T13:38:46Z",
            "platform": "LANDSAT_8",
            "eo:cloud_cover": cloud,
            "proj:epsg": int(crs.split(":")[1]),
            "proj:bbox": list(bbox),
        },
        "links": [],
        "assets": assets,
    }
    store.write_bytes(f"{folder}/{item_id}.json", json.dumps(item).encode())
    return dn, transform, crs


def write_item(store: Store, key: str, payload: bytes = b"{}") -> None:
    """A stand-in item (content unread by the sensor), for listing tests and the benchmark."""
    store.write_bytes(key, payload)
