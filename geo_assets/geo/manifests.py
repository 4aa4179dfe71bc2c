"""What the tile assets store as their manifests (a JSON object beside their tiles), as types.

A manifest is what the next step reads: the tiles' keys, paths, boxes and pixel digests, and what the
tiles were cut or predicted from. They stay plain dicts (JSON in, JSON out, and the data version is a
digest of that JSON); these types name their keys so a misspelt or missing one fails the type check,
not a run. Keys marked NotRequired are absent from some manifests: a tile without clouds or held-out
labels, an acquisition read from a bundled sample, or a manifest written before the key existed.
"""

# No `from __future__ import annotations`: TypedDict reads NotRequired from evaluated annotations only, and
# the Dagster types (geo_assets/assets/manifest_types.py) check the required keys it finds.
from typing import Any, NotRequired, TypedDict

__all__ = [
    "DatasetItem",
    "DatasetManifest",
    "Ground",
    "ImageryManifest",
    "ImageryTile",
    "LabelTile",
    "LabelsCut",
    "LabelsManifest",
    "PredictionTile",
    "PredictionsManifest",
]


class ImageryTile(TypedDict):
    key: str  # the tile's name on its grid, "c{col}_r{row}"
    path: str  # its COG's store key
    bounds: list[float]  # minx, miny, maxx, maxy in the manifest's CRS
    digest: str  # of its pixels, checked on read
    nodata_fraction: float
    cloud_path: NotRequired[str]  # a cloud mask, where the source has one
    cloud_digest: NotRequired[str]
    cloud_fraction: NotRequired[float]


class LabelTile(TypedDict):
    key: str
    path: str
    bounds: list[float]
    digest: str
    labelled_fraction: float
    class_counts: list[int]  # pixels per class of the legend (geo.landcover.CLASSES)
    holdout_path: NotRequired[str]  # labels never trained on, scored in reports
    holdout_digest: NotRequired[str]
    holdout_class_counts: NotRequired[list[int]]


class PredictionTile(TypedDict):
    key: str
    path: str
    digest: str
    class_counts: list[int]


class ImageryManifest(TypedDict):
    """The imagery tiles of one acquisition (region, date) in one variant (source, tile size, bands)."""

    region: str
    date: str
    variant: str  # source, tile size and bands: the manifest's own key among an acquisition's variants
    source: str
    bands: list[str]
    crs: str
    resolution: float
    origin: list[float]  # the grid's origin: tiles of one variant share a pixel lattice
    tile_size: int
    dtype: str
    nodata: float | None
    prefix: str
    scene: NotRequired[dict[str, Any]]  # the source items read, in mosaic order (STAC sources)
    tiles: list[ImageryTile]


class LabelsManifest(TypedDict):
    """The label tiles of one region, on its imagery's grid."""

    region: str
    source: str
    crs: str
    resolution: float
    origin: list[float]
    tile_size: int
    prefix: str
    tiles: list[LabelTile]


class PredictionsManifest(TypedDict):
    """The class tiles and mosaic one model version predicted from one imagery variant."""

    region: str
    date: str
    model: str
    version: str
    variant: str  # the imagery variant predicted
    margin: int  # px of neighbouring pixels each tile was predicted with: part of the key
    imagery: str  # the imagery manifest's key
    imagery_version: str
    inference_runtime: str | None
    source: str
    crs: str
    resolution: float
    prefix: str
    mosaic: str
    tiles: list[PredictionTile]
    class_counts: dict[str, int]


class LabelsCut(TypedDict):
    source: str
    tile_size: int


class Ground(TypedDict):
    crs: str
    geometry: dict[str, Any]  # GeoJSON: the union of the boxes read


class DatasetItem(TypedDict):
    """One acquisition of a training or evaluation set, with the data versions it was read at."""

    region: str
    date: str
    bands: list[str]
    tiles: int
    imagery: str
    imagery_version: str
    labels: str
    labels_version: str
    labels_cut: NotRequired[LabelsCut]  # absent from sets recorded before cuts were
    footprint: dict[str, Any]  # {"crs", "bbox"} of the region when the set was made
    ground: NotRequired[Ground]  # absent from sets recorded before grounds were


class DatasetManifest(TypedDict):
    """A training or evaluation set: its acquisitions and the bands its model reads."""

    regions: list[str]
    dates: NotRequired[list[str]]  # the dates it resolved to; absent from sets recorded before they were
    bands: list[str]
    items: list[DatasetItem]
    model: NotRequired[str]  # the model the set is for (training_set, evaluation_set)
