"""Training and evaluation sets in a real local store: synthetic imagery and label COGs cut on the
source's grid by the same tile functions the imagery and labels assets run, their manifests, and a
set manifest as the training_set / evaluation_set assets write it."""

from __future__ import annotations

import threading
import weakref
from contextlib import contextmanager

from geo_assets.geo.regions import Region
from geo_assets.geo.sources import get_source
from geo_assets.geo.store import Store
from geo_assets.geo.tiling import cut_imagery_tile, cut_label_tile
from geo_assets.ml import pairs

BANDS = ["blue", "green", "red", "nir"]
TILE = 64
# 2 x 2 tiles of 64 px at 10 m, apart from each other on the ground.
FIELD = Region("mem-field", (400000.0, 5120000.0, 401280.0, 5121280.0), "EPSG:32631", "synthetic", "synthetic")
HOLDOUT = Region("mem-holdout", (440320.0, 5120000.0, 441600.0, 5121280.0), "EPSG:32631", "synthetic", "synthetic")
DATES = ["2024-05-01", "2024-06-01", "2024-07-01", "2024-08-01"]


def acquisition(store: Store, region: Region, date: str) -> dict:
    """Cut one region x date and its labels; the set manifest's item for it."""
    source = get_source("synthetic")
    spec = source.spec(region)
    scene = source.scene(region, date, bands=BANDS)
    grid = spec.grid(region.crs, TILE)
    tiles = grid.tiles(region.bbox)
    grid_fields = {"crs": region.crs, "resolution": spec.resolution, "origin": list(grid.origin), "tile_size": TILE}
    imagery_key, labels_key = f"manifests/imagery/{region.name}/{date}.json", f"manifests/labels/{region.name}.json"
    if not store.exists(labels_key):
        prefix = f"labels/{region.name}"
        entries = [cut_label_tile(store, region, "synthetic", spec.resolution, prefix, t) for t in tiles]
        store.write_json(labels_key, {"region": region.name, **grid_fields, "tiles": entries})
    prefix = f"imagery/{region.name}/{date}"
    entries = [cut_imagery_tile(store, scene, BANDS, prefix, t) for t in tiles]
    store.write_json(
        imagery_key,
        {"region": region.name, "date": date, "bands": BANDS, **grid_fields, "nodata": 0.0, "tiles": entries},
    )
    return {
        "region": region.name,
        "date": date,
        "bands": BANDS,
        "tiles": len(tiles),
        "imagery": imagery_key,
        "imagery_version": f"{region.name}-{date}",
        "labels": labels_key,
        "labels_version": region.name,
        "footprint": {"crs": region.crs, "bbox": list(region.bbox)},
    }


def dataset(store: Store, region: Region, dates: list[str]) -> dict:
    items = [acquisition(store, region, d) for d in dates]
    return {"regions": [region.name], "dates": dates, "bands": BANDS, "items": items}


class AliveTiles:
    """Counts the decoded tiles alive at once: a weak reference to every image the real pair reader
    returns, and the most of them alive whenever it returns one."""

    def __init__(self) -> None:
        self.refs: list[weakref.ref] = []
        self.reads = 0
        self.most = 0
        self._lock = threading.Lock()

    def add(self, image) -> None:
        with self._lock:
            self.refs = [r for r in self.refs if r() is not None] + [weakref.ref(image)]
            self.reads += 1
            self.most = max(self.most, len(self.refs))


@contextmanager
def counting_tiles(monkeypatch):
    alive, read = AliveTiles(), pairs._load_pair

    def load_pair(*args, **kwargs):
        image, label = read(*args, **kwargs)
        alive.add(image)
        return image, label

    monkeypatch.setattr(pairs, "_load_pair", load_pair)
    try:
        yield alive
    finally:
        monkeypatch.setattr(pairs, "_load_pair", read)
