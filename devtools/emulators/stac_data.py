"""Test catalogues in the real layouts: COGs in S3 buckets (or Azure blob containers) and the STAC items that list them.

Pixels are real: the shipped Sentinel-2 and Landsat 8 sample clips (`geo_assets.geo.sample`).
What the samples lack is made up deterministically and said so: the quality bands (SCL,
QA_PIXEL) with some cloud, the Landsat NIR band, and the per-item variations that make each
case observable (a +1000 BOA offset, a second overlapping item, an item in another CRS).

    with seaweedfs(...) as s3:
        es = earth_search(workdir, s3)       # sentinel-cogs/sentinel-s2-l2a-cogs/... + items
        with stac_api(workdir, [es.items_file]) as url: ...

Each builder returns a `Catalogue`: the items, the file rustac serves, and a local copy of every
object by href, from which tests compute the pixels they expect without going through the reader.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.enums import Resampling
from rasterio.warp import calculate_default_transform, reproject

from geo_assets.geo import sample
from geo_assets.geo.cog import write_cog
from geo_assets.geo.stac import region_footprint_wgs84

S2_CRS = "EPSG:32719"
S2_TRANSFORM = Affine(10.0, 0.0, 600000.0, 0.0, -10.0, 4700020.0)  # the sample's grid
S2_FILES = {"blue": "B02", "green": "B03", "red": "B04", "nir": "B08"}
S2_TILE = ("19", "F", "FM")  # UTM zone, latitude band, 100 km square of the sample (illustrative MGRS id)
# Landsat C2 grids have pixel corners on 15 + 30k m, as the sample clips do: they are served where they lie.
L8_CRS = "EPSG:32621"
L8_FILES = {"blue": "SR_B2", "green": "SR_B3", "red": "SR_B4", "nir08": "SR_B5", "qa_pixel": "QA_PIXEL"}
QA_CLEAR, QA_DILATED, QA_CLOUD, QA_SHADOW, QA_FILL = 21824, 21826, 22280, 23888, 1  # real QA_PIXEL values


@dataclass
class Catalogue:
    items: list[dict] = field(default_factory=list)
    objects: dict[str, Path] = field(default_factory=dict)  # href -> local copy of the object
    items_file: Path | None = None

    def item(self, item_id: str) -> dict:
        return next(i for i in self.items if i["id"] == item_id)

    def local(self, item_id: str, asset: str) -> Path:
        a = self.item(item_id)["assets"][asset]
        return self.objects[(a.get("alternate") or {}).get("s3", {}).get("href") or a["href"]]

    def write(self, path: Path) -> Path:
        path.write_text(json.dumps({"type": "FeatureCollection", "features": self.items}))
        self.items_file = path
        return path


class Uploader:
    """Writes objects to S3 (boto3 against any endpoint) or Azure Blob (azure-storage-blob), keeping a local copy."""

    def __init__(self, workdir: Path, s3=None, azure=None):
        self.workdir = Path(workdir)
        self.blobs = azure.client() if azure is not None else None  # BlobServiceClient; buckets are containers
        self.client = None
        if s3 is not None:
            import boto3

            self.client = boto3.client(
                "s3",
                endpoint_url=s3.endpoint_url,
                region_name=s3.region,
                aws_access_key_id=s3.access_key,
                aws_secret_access_key=s3.secret_key,
            )

    def put(self, bucket: str, key: str, local: Path) -> None:
        if self.client is not None:
            self.client.upload_file(str(local), bucket, key)
        if self.blobs is not None:
            with open(local, "rb") as data:
                self.blobs.get_blob_client(bucket, key).upload_blob(data, overwrite=True)

    def cog(
        self, bucket: str, key: str, array: np.ndarray, crs: str, transform: Affine, nodata, upload: bool = True
    ) -> Path:
        local = self.workdir / "objects" / bucket / key
        local.parent.mkdir(parents=True, exist_ok=True)
        write_cog(local, array, crs, transform, nodata, blocksize=128)
        if upload:
            self.put(bucket, key, local)
        return local


def blocks(shape: tuple[int, int], seed: int, classes: dict[int, float], block: int = 4) -> np.ndarray:
    """A deterministic patchwork of `classes` (value -> probability) in square blocks of `block` pixels."""
    rng = np.random.default_rng(seed)
    values, p = zip(*classes.items())
    rows, cols = -(-shape[0] // block), -(-shape[1] // block)
    coarse = rng.choice(np.array(values), size=(rows, cols), p=np.array(p) / sum(p))
    return np.kron(coarse, np.ones((block, block), dtype=coarse.dtype))[: shape[0], : shape[1]]


def synthetic_scl(shape: tuple[int, int], seed: int) -> np.ndarray:
    """A made-up 20 m SCL: mostly vegetation/bare (4/5), some cloud (8/9), shadow (3), cirrus (10), no data (0)."""
    return blocks(shape, seed, {4: 0.45, 5: 0.15, 8: 0.1, 9: 0.1, 3: 0.07, 10: 0.05, 0: 0.08}).astype(np.uint8)


def s2_sample_dn() -> dict[str, np.ndarray]:
    """The Sentinel-2 sample's bands as uint16 DN (reflectance x 10000), by our band name."""
    with rasterio.open(sample.sample_path("sentinel2")) as src:
        data = src.read()
    return {b: data[i].astype(np.uint16) for i, b in enumerate(sample.SAMPLES["sentinel2"].bands)}


def _stac_item(item_id: str, collection: str, bounds, crs: str, properties: dict, assets: dict) -> dict:
    footprint = region_footprint_wgs84(bounds, crs, points_per_side=4)
    ring = np.array(footprint["coordinates"][0])
    return {
        "type": "Feature",
        "stac_version": "1.0.0",
        "id": item_id,
        "collection": collection,
        "stac_extensions": [
            "https://stac-extensions.github.io/eo/v1.1.0/schema.json",
            "https://stac-extensions.github.io/projection/v1.1.0/schema.json",
            "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
        ],
        "geometry": footprint,
        "bbox": [float(ring[:, 0].min()), float(ring[:, 1].min()), float(ring[:, 0].max()), float(ring[:, 1].max())],
        "properties": properties,
        "links": [],
        "assets": assets,
    }


def _bounds(transform: Affine, shape: tuple[int, int]):
    return (transform.c, transform.f + transform.e * shape[0], transform.c + transform.a * shape[1], transform.f)


def _warp(array: np.ndarray, src_transform: Affine, dst_crs: str, resolution: float, nodata: int):
    """Reproject a sample-grid band into another CRS (nearest), as a provider in a neighbouring UTM zone would."""
    h, w = array.shape
    transform, width, height = calculate_default_transform(
        S2_CRS, dst_crs, w, h, *_bounds(src_transform, (h, w)), resolution=resolution
    )
    out = np.full((height, width), nodata, dtype=array.dtype)
    reproject(
        array,
        out,
        src_transform=src_transform,
        src_crs=S2_CRS,
        dst_transform=transform,
        dst_crs=dst_crs,
        resampling=Resampling.nearest,
        src_nodata=nodata,
        dst_nodata=nodata,
    )
    return out, transform


# --- Earth Search ----------------------------------------------------------------------------


@dataclass(frozen=True)
class S2Case:
    """One Sentinel-2 L2A item to write: how its pixels and properties differ from the plain sample."""

    date: str
    time: str = "14:37:29"
    platform: str = "sentinel-2b"
    sequence: int = 0
    cloud: float = 10.0
    baseline: str = "05.00"
    boa_offset_applied: bool = False
    dn_add: int = 1000  # added to the sample's DN in the stored COG (the BOA offset, and a marker)
    scl_seed: int = 1
    crs: str = S2_CRS  # another CRS: the pixels are reprojected there
    declared_crs: str | None = None  # proj:epsg to declare, when it should lie about the COG
    drop_assets: tuple[str, ...] = ()  # assets left out of the item
    missing_objects: tuple[str, ...] = ()  # files listed but never uploaded
    truncate: tuple[str, ...] = ()  # files uploaded cut to 60 % of their bytes

    @property
    def id(self) -> str:
        return f"S2{self.platform[-1].upper()}_{''.join(S2_TILE)}_{self.date.replace('-', '')}_{self.sequence}_L2A"


def earth_search_cases() -> list[S2Case]:
    return [
        # 2024-06-01: two overlapping items (the mosaic), both baseline >= 04.00 with the +1000 offset in the DN.
        S2Case("2024-06-01", cloud=10.0, scl_seed=1),
        S2Case("2024-06-01", time="14:47:19", platform="sentinel-2a", sequence=1, cloud=35.0, dn_add=1100, scl_seed=2),
        S2Case("2021-06-01", baseline="03.00", dn_add=0, scl_seed=3),  # before 04.00: DN untouched
        S2Case("2023-06-01", baseline="05.09", boa_offset_applied=True, dn_add=0, scl_seed=4),  # already harmonised
        S2Case("2022-06-01", baseline="04.00", crs="EPSG:32720", scl_seed=5),  # neighbouring UTM zone: warped on read
        S2Case("2020-06-01", baseline="02.09", dn_add=0, missing_objects=("B08",)),
        S2Case("2020-06-02", baseline="02.09", dn_add=0, truncate=("B03",)),
        S2Case("2020-06-03", baseline="02.09", dn_add=0, drop_assets=("nir",)),
        S2Case("2020-06-04", baseline="02.09", dn_add=0, crs="EPSG:32720", declared_crs="EPSG:32719"),
    ]


def earth_search(workdir: Path, s3, cases: list[S2Case] | None = None) -> Catalogue:
    """Sentinel-2 L2A COGs in `sentinel-cogs` under Earth Search's key layout, and its v1 items."""
    up = Uploader(workdir, s3=s3)
    return _sentinel2(up, cases or earth_search_cases(), _earth_search_layout)


def _earth_search_layout(case: S2Case, name: str) -> tuple[str, str, str]:
    """(bucket, key, href) of one band file, as Earth Search lays them out."""
    zone, band, square = S2_TILE
    year, month = case.date[:4], int(case.date[5:7])
    key = f"sentinel-s2-l2a-cogs/{zone}/{band}/{square}/{year}/{month}/{case.id}/{name}.tif"
    return "sentinel-cogs", key, f"s3://sentinel-cogs/{key}"


def _sentinel2(up: Uploader, cases: list[S2Case], layout, planetary: bool = False) -> Catalogue:
    cat = Catalogue()
    dn = s2_sample_dn()
    shape = dn["blue"].shape
    scl_transform = S2_TRANSFORM * Affine.scale(2.0)
    for case in cases:
        scl = synthetic_scl((shape[0] // 2, shape[1] // 2), case.scl_seed)
        nodata = np.repeat(np.repeat(scl == 0, 2, axis=0), 2, axis=1)  # the bands have no data where SCL says so
        assets, footprint = {}, None
        files = {**{b: (S2_FILES[b], 10) for b in S2_FILES}, "scl": ("SCL", 20)}
        for band, (name, res) in files.items():
            if band == "scl":
                array, transform, nd = scl, scl_transform, 0
            else:
                array = np.where(nodata, 0, dn[band].astype(np.int32) + case.dn_add).astype(np.uint16)
                transform, nd = S2_TRANSFORM, 0
            if case.crs != S2_CRS:
                array, transform = _warp(array, transform, case.crs, res, nd)
            bucket, key, href = layout(case, name)
            local = up.cog(bucket, key, array, case.crs, transform, nd, upload=name not in case.missing_objects)
            if name in case.truncate:
                cut = local.with_suffix(".truncated.tif")
                cut.write_bytes(local.read_bytes()[: int(local.stat().st_size * 0.6)])
                up.put(bucket, key, cut)
                local = cut
            cat.objects[href] = local
            if band == "blue":
                footprint = _bounds(transform, array.shape)
            raster = {"nodata": 0, "data_type": "uint8" if band == "scl" else "uint16", "spatial_resolution": res}
            if band != "scl" and not planetary:  # Earth Search declares scale and offset on every item alike
                raster.update(scale=0.0001, offset=-0.1)
            asset_key = name if planetary else band
            if band not in case.drop_assets:
                assets[asset_key] = {
                    "href": href,
                    "type": "image/tiff; application=geotiff; profile=cloud-optimized",
                    "roles": ["data"],
                    "raster:bands": [raster],
                    "proj:shape": list(array.shape),
                    "proj:transform": list(transform)[:6],
                }
        properties = {
            "datetime": f"{case.date}T{case.time}.000000Z",
            "platform": case.platform,
            "constellation": "sentinel-2",
            "eo:cloud_cover": case.cloud,
            "s2:processing_baseline": case.baseline,
            "proj:epsg": int((case.declared_crs or case.crs).split(":")[1]),
            "mgrs:utm_zone": int(S2_TILE[0]),
            "mgrs:latitude_band": S2_TILE[1],
            "mgrs:grid_square": S2_TILE[2],
        }
        if not planetary:
            properties["earthsearch:boa_offset_applied"] = case.boa_offset_applied
        item_id = case.id if not planetary else _pc_id(case)
        cat.items.append(_stac_item(item_id, "sentinel-2-l2a", footprint, case.crs, properties, assets))
    return cat


# --- Planetary Computer ----------------------------------------------------------------------


def _pc_id(case: S2Case) -> str:
    stamp = f"{case.date.replace('-', '')}T{case.time.replace(':', '')}"
    return f"S2{case.platform[-1].upper()}_MSIL2A_{stamp}_R096_T{''.join(S2_TILE)}_{stamp[:9]}180203"


PC_CONTAINER = "sentinel2-l2"  # Planetary Computer's Sentinel-2 L2A container (account sentinel2l2a01)


def planetary_computer(workdir: Path, azure, cases: list[S2Case] | None = None) -> Catalogue:
    """The same kind of scene as Planetary Computer lays it out: blobs in the `sentinel2-l2` container
    of an Azure Blob server (`azure`: an `emulators.azure.AzureBlobServer`, the container created;
    hrefs path-style, `{account_url}/sentinel2-l2/...`), assets B02..B08 and SCL, no raster offsets."""
    up = Uploader(workdir, azure=azure)
    cases = cases or [S2Case("2024-06-01", cloud=10.0, scl_seed=1)]

    def layout(case: S2Case, name: str):
        zone, band, square = S2_TILE
        y, m, d = case.date.split("-")
        res = "R20m" if name == "SCL" else "R10m"
        key = f"{zone}/{band}/{square}/{y}/{m}/{d}/{_pc_id(case)}.SAFE/GRANULE/L2A/IMG_DATA/{res}/{name}.tif"
        return PC_CONTAINER, key, f"{azure.account_url}/{PC_CONTAINER}/{key}"

    return _sentinel2(up, cases, layout, planetary=True)


# --- Landsat Collection 2 Level-2 ------------------------------------------------------------

L8_SCENES = {  # item id -> sample file (two adjacent WRS-2 rows of path 224, same day)
    "LC08_L2SP_224078_20200518_20200820_02_T1": ("landsat8_224078.tif", 12.0, "13:38:46"),
    "LC08_L2SP_224077_20200518_20200820_02_T1": ("landsat8_224077.tif", 30.0, "13:38:22"),
}


def synthetic_qa(shape: tuple[int, int], seed: int, fill: np.ndarray) -> np.ndarray:
    qa = blocks(shape, seed, {QA_CLEAR: 0.6, QA_DILATED: 0.1, QA_CLOUD: 0.15, QA_SHADOW: 0.15}, block=8).astype(
        np.uint16
    )
    return np.where(fill, QA_FILL, qa).astype(np.uint16)


def synthetic_nir(green: np.ndarray, red: np.ndarray) -> np.ndarray:
    """The Landsat sample has no NIR band: made up from green and red (a vegetation-like rise), 0 where no data."""
    nir = green.astype(np.int64) + red.astype(np.int64) // 2 + 1500
    return np.where((green == 0) | (red == 0), 0, np.clip(nir, 1, 65535)).astype(np.uint16)


def landsat(workdir: Path, s3) -> Catalogue:
    """Landsat 8 C2 L2 SR COGs in `usgs-landsat` under USGS's key layout, and Landsat Look-style items."""
    up = Uploader(workdir, s3=s3)
    cat = Catalogue()
    for seed, (item_id, (file, cloud, time)) in enumerate(L8_SCENES.items(), start=11):
        with rasterio.open(sample.sample_path(file)) as src:
            blue, green, red = src.read()
            transform = src.transform
        bands = {"blue": blue, "green": green, "red": red, "nir08": synthetic_nir(green, red)}
        bands["qa_pixel"] = synthetic_qa(blue.shape, seed, (blue == 0) | (green == 0) | (red == 0))
        path, row = item_id[10:13], item_id[13:16]
        year = item_id[17:21]
        prefix = f"collection02/level-2/standard/oli-tirs/{year}/{path}/{row}/{item_id}/{item_id}"
        assets = {}
        for asset, name in L8_FILES.items():
            key = f"{prefix}_{name}.TIF"
            nodata = 1 if asset == "qa_pixel" else 0
            local = up.cog("usgs-landsat", key, bands[asset], L8_CRS, transform, nodata)
            href = f"s3://usgs-landsat/{key}"
            cat.objects[href] = local
            raster = {"nodata": nodata, "data_type": "uint16"}
            if asset != "qa_pixel":
                raster.update(scale=2.75e-05, offset=-0.2)
            assets[asset] = {
                # Landsat Look: the https href needs a login; the same object is the alternate s3 href.
                "href": f"https://landsatlook.usgs.gov/data/{key}",
                "alternate": {"s3": {"storage:platform": "AWS", "storage:requester_pays": True, "href": href}},
                "type": "image/vnd.stac.geotiff; cloud-optimized=true",
                "roles": ["data"],
                "raster:bands": [raster],
            }
        date = f"{year}-{item_id[21:23]}-{item_id[23:25]}"
        properties = {
            "datetime": f"{date}T{time}.000000Z",
            "platform": "LANDSAT_8",
            "eo:cloud_cover": cloud,
            "landsat:wrs_path": path,
            "landsat:wrs_row": row,
            "landsat:collection_category": "T1",
            "proj:epsg": int(L8_CRS.split(":")[1]),
        }
        cat.items.append(
            _stac_item(item_id, "landsat-c2l2-sr", _bounds(transform, blue.shape), L8_CRS, properties, assets)
        )
    return cat
