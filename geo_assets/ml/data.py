"""Training pairs checked, and random chip sampling for training (normalisation: ml.normalisation)."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from geo_assets.geo.landcover import IGNORE

# Attempts to find a chip with at least one labelled pixel before accepting an empty one.
_MAX_DRAWS = 20


def validate_pairs(
    images: Sequence[np.ndarray],
    labels: Sequence[np.ndarray],
    in_channels: int | None = None,
    num_classes: int | None = None,
) -> None:
    """Raise ValueError with the offending index so bad inputs are easy to trace to a tile."""
    if len(images) == 0:
        raise ValueError("no training images given (empty list)")
    if len(images) != len(labels):
        raise ValueError(f"got {len(images)} images but {len(labels)} label arrays")
    any_labelled = False
    for i, (image, label) in enumerate(zip(images, labels)):
        if image.ndim != 3:
            raise ValueError(f"image {i} must have shape (C,H,W), got {image.shape}")
        if label.ndim != 2:
            raise ValueError(f"label {i} must have shape (H,W), got {label.shape}")
        if image.shape[1:] != label.shape:
            raise ValueError(f"image {i} is {image.shape[1]}x{image.shape[2]} but label {i} is {label.shape[0]}x{label.shape[1]}")
        if in_channels is not None and image.shape[0] != in_channels:
            raise ValueError(f"image {i} has {image.shape[0]} channels, expected in_channels={in_channels}")
        labelled = label[label != IGNORE]
        if num_classes is not None and labelled.size and int(labelled.max()) >= num_classes:
            raise ValueError(
                f"label {i} contains class {int(labelled.max())} but num_classes={num_classes} "
                f"(use {IGNORE} for unlabelled pixels)"
            )
        any_labelled |= labelled.size > 0
    if not any_labelled:
        raise ValueError(f"no labelled pixels in any label array (all are IGNORE={IGNORE})")


class ChipDataset(Dataset):
    """Random, augmented square chips from whole tiles.

    Each item is drawn from an RNG seeded by (seed, epoch, index), so results do not
    depend on DataLoader worker count or order; call set_epoch() to get fresh chips.
    """

    def __init__(
        self,
        images: Sequence[np.ndarray],
        labels: Sequence[np.ndarray],
        chip_size: int = 128,
        chips_per_epoch: int = 256,
        seed: int = 0,
        augment: bool = True,
        groups: Sequence[int] | None = None,
    ) -> None:
        validate_pairs(images, labels)
        if chip_size < 1 or chips_per_epoch < 1:
            raise ValueError(f"chip_size and chips_per_epoch must be >= 1, got {chip_size}, {chips_per_epoch}")
        if groups is not None and len(groups) != len(images):
            raise ValueError(f"got {len(groups)} group ids for {len(images)} images")
        self.images = [self._pad(np.asarray(im, dtype=np.float32), chip_size, 0.0) for im in images]
        self.labels = [self._pad(np.asarray(lb, dtype=np.uint8), chip_size, IGNORE) for lb in labels]
        self.chip_size = chip_size
        self.chips_per_epoch = chips_per_epoch
        self.seed = seed
        self.augment = augment
        self.epoch = 0
        # Every group (an acquisition) is drawn alike, and every tile with labels within it, however
        # sparse: a real scene's few polygons get as many chips as a whole synthetic scene (the chip
        # is then placed over some of its labels).
        labelled = np.array([np.any(lb != IGNORE) for lb in self.labels], dtype=np.float64)
        group = np.zeros(len(self.labels), dtype=np.int64) if groups is None else np.asarray(groups)
        per_group = {g: labelled[group == g].sum() for g in set(group.tolist())}
        weights = np.array([w / per_group[g] if w else 0.0 for w, g in zip(labelled, group.tolist())])
        self.tile_weights = weights / weights.sum()

    @staticmethod
    def _pad(array: np.ndarray, size: int, fill: float) -> np.ndarray:
        # Pad bottom/right only up to chip size; large tiles are left untouched (no copy).
        h, w = array.shape[-2:]
        if h >= size and w >= size:
            return array
        pad = [(0, 0)] * (array.ndim - 2) + [(0, max(0, size - h)), (0, max(0, size - w))]
        return np.pad(array, pad, constant_values=fill)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.chips_per_epoch

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not 0 <= index < self.chips_per_epoch:
            raise IndexError(index)
        rng = np.random.default_rng([self.seed, self.epoch, index])
        s = self.chip_size
        t = int(rng.choice(len(self.labels), p=self.tile_weights))
        h, w = self.labels[t].shape
        for _ in range(_MAX_DRAWS):
            y, x = int(rng.integers(0, h - s + 1)), int(rng.integers(0, w - s + 1))
            label = self.labels[t][y : y + s, x : x + s]
            if (label != IGNORE).any():
                break
        else:  # a sparse tile: centre the chip on one of its labelled pixels
            rows, cols = np.nonzero(self.labels[t] != IGNORE)
            k = int(rng.integers(0, rows.size))
            y, x = min(max(int(rows[k]) - s // 2, 0), h - s), min(max(int(cols[k]) - s // 2, 0), w - s)
            label = self.labels[t][y : y + s, x : x + s]
        image = self.images[t][:, y : y + s, x : x + s]
        if self.augment:
            k = int(rng.integers(0, 4))
            image, label = np.rot90(image, k, axes=(1, 2)), np.rot90(label, k)
            if rng.random() < 0.5:
                image, label = image[:, :, ::-1], label[:, ::-1]
        return (
            torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)),
            torch.from_numpy(np.ascontiguousarray(label).astype(np.int64)),
        )
