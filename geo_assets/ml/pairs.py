"""Pairs of imagery tiles and label tiles, for training and evaluation: read one by one (SetTiles),
never a whole set at once."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import numpy as np

from geo_assets.engine.batches import Mapper
from geo_assets.geo.cog import read_raster
from geo_assets.geo.landcover import CLASSES, IGNORE
from geo_assets.geo.manifests import DatasetItem, DatasetManifest, LabelsManifest
from geo_assets.geo.store import Store
from geo_assets.ml.inputs import Normalise, read_tile


def check_same_grid(imagery: dict, labels: dict) -> None:
    """Imagery and labels must be cut on one grid, or their tiles would not line up pixel for pixel."""
    for field in ("crs", "resolution", "origin", "tile_size"):
        if imagery.get(field, [0.0, 0.0]) != labels.get(field, [0.0, 0.0]):  # manifests before "origin": (0, 0)
            raise ValueError(
                f"imagery {imagery['region']}/{imagery['date']} and its labels differ in {field}: "
                f"{imagery[field]} vs {labels[field]}; materialise both with the same tile_size and source grid"
            )


def validate_pair(
    i: int | str, image: np.ndarray, label: np.ndarray, in_channels: int | None = None, num_classes: int | None = None
) -> bool:
    """Check one (image, label) pair named `i` (an index or a tile); whether it holds labelled pixels."""
    if image.ndim != 3:
        raise ValueError(f"image {i} must have shape (C,H,W), got {image.shape}")
    if label.ndim != 2:
        raise ValueError(f"label {i} must have shape (H,W), got {label.shape}")
    if image.shape[1:] != label.shape:
        raise ValueError(
            f"image {i} is {image.shape[1]}x{image.shape[2]} but label {i} is {label.shape[0]}x{label.shape[1]}"
        )
    if in_channels is not None and image.shape[0] != in_channels:
        raise ValueError(f"image {i} has {image.shape[0]} channels, expected in_channels={in_channels}")
    labelled = label[label != IGNORE]
    if num_classes is not None and labelled.size and int(labelled.max()) >= num_classes:
        raise ValueError(
            f"label {i} contains class {int(labelled.max())} but num_classes={num_classes} "
            f"(use {IGNORE} for unlabelled pixels)"
        )
    return labelled.size > 0


def _load_pair(
    store: Store, item: tuple[dict, dict], normalise: Normalise | None = None
) -> tuple[np.ndarray, np.ndarray]:
    tile, label_entry = item
    image, valid, _ = read_tile(store, tile, normalise)
    with store.env():  # in the work unit: GDAL config is per thread
        label, _ = read_raster(store.path(label_entry["path"]))
        cloud = read_raster(store.path(tile["cloud_path"]))[0] if "cloud_path" in tile else None
    label = label[0].copy()
    if cloud is not None:  # this date's clouds cover whatever land lies below
        label[cloud[0] == 1] = CLASSES.index("cloud")
    label[~valid] = IGNORE
    return image, label


def check_labels_cut(item: DatasetItem, labels: LabelsManifest) -> None:
    """A set reads its acquisitions' labels as they were cut when it was selected: labels cut since at
    another tile size or from another source (they replace the region's one labels manifest) are refused."""
    then = item.get("labels_cut")  # sets selected before the cut was recorded: the grid check below
    now = {"source": labels.get("source"), "tile_size": labels.get("tile_size")}
    if then is not None and then != now:
        raise ValueError(
            f"the labels of region {item['region']!r} are now cut at {now['tile_size']} px from {now['source']}; this set "
            f"reads {item['region']}/{item['date']} with labels cut at {then['tile_size']} px from {then['source']}. "
            f"Materialise labels[{item['region']}] with that cut again, or select the set again (its training_set or "
            "evaluation_set)"
        )


def pair_entries(imagery: dict, labels: dict) -> list[tuple[dict, dict]]:
    """(imagery entry, label entry) of every tile present in both manifests of one acquisition."""
    check_same_grid(imagery, labels)
    by_key = {e["key"]: e for e in labels["tiles"]}
    items = [(t, by_key[t["key"]]) for t in imagery["tiles"] if t["key"] in by_key]
    if not items:
        raise ValueError(f"imagery {imagery['region']}/{imagery['date']} shares no tiles with its labels")
    return items


def load_pairs(
    store: Store, imagery: dict, labels: dict, mapper: Mapper, normalise: Normalise | None = None
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(normalised image, label) for every tile of one acquisition, all in memory; `normalise` picks the model's bands."""
    return mapper(partial(_load_pair, store, normalise=normalise), pair_entries(imagery, labels))


def _tile_size(imagery: dict) -> int:
    """A manifest's tile size (manifests before "tile_size": from a tile's bounds)."""
    if imagery.get("tile_size"):
        return int(imagery["tile_size"])
    bounds = imagery["tiles"][0]["bounds"] if imagery["tiles"] else [0, 0, 0, 0]
    return round(max(bounds[2] - bounds[0], bounds[3] - bounds[1]) / float(imagery["resolution"]))


@dataclass(frozen=True)
class SetTiles:
    """The tile pairs of a training or evaluation set as manifest entries, in the set's order: a tile is
    read when asked for, so nothing here grows with the set but the entries themselves."""

    store: Store
    items: list[tuple[dict, dict]]  # (imagery entry, label entry) of each tile
    names: list[str]  # "region/date tile key": what errors name
    groups: list[int]  # the acquisition of each tile (its index in the set's items)
    tile_size: int  # the largest of the set's tiles, px a side

    @classmethod
    def of(cls, store: Store, manifest: DatasetManifest) -> SetTiles:
        labels = {
            key: store.read_json(key) for key in {item["labels"] for item in manifest["items"]}
        }  # one read a region
        items, names, groups, size = [], [], [], 0
        for group, item in enumerate(manifest["items"]):
            check_labels_cut(item, labels[item["labels"]])
            imagery = store.read_json(item["imagery"])
            pairs = pair_entries(imagery, labels[item["labels"]])
            items += pairs
            names += [f"{imagery['region']}/{imagery['date']} tile {t['key']}" for t, _ in pairs]
            groups += [group] * len(pairs)
            size = max(size, _tile_size(imagery))
        return cls(store, items, names, groups, size)

    def __len__(self) -> int:
        return len(self.items)

    def read(self, index: int, normalise: Normalise | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(normalised image, label) of tile `index`; `normalise` picks the model's bands."""
        return _load_pair(self.store, self.items[index], normalise)
