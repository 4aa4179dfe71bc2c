"""Training pairs checked, and random chip sampling for training (normalisation: ml.normalisation).

Chips are drawn by `ChipSampler` alike whether the tiles are in memory (`ChipDataset`) or read batch
by batch from a store (`ChipBatches`): the same seed gives the same chips either way."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from geo_assets.engine.batches import Mapper, serial_map
from geo_assets.engine.threads import read_ahead
from geo_assets.geo.landcover import IGNORE
from geo_assets.ml.pairs import validate_pair

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
        any_labelled |= validate_pair(i, image, label, in_channels, num_classes)
    if not any_labelled:
        raise ValueError(f"no labelled pixels in any label array (all are IGNORE={IGNORE})")


def pad(array: np.ndarray, size: int, fill: float) -> np.ndarray:
    """Pad bottom/right up to chip size; larger tiles are left untouched (no copy)."""
    h, w = array.shape[-2:]
    if h >= size and w >= size:
        return array
    widths = [(0, 0)] * (array.ndim - 2) + [(0, max(0, size - h)), (0, max(0, size - w))]
    return np.pad(array, widths, constant_values=fill)


class ChipSampler:
    """Where each chip of an epoch comes from: a tile drawn, then a window of it, then an augmentation.

    Chip `index` of `epoch` is drawn from an RNG seeded by (seed, epoch, index), so chips do not depend
    on the order or the threads they are cut in. Every group (an acquisition) is drawn alike, and every
    tile with labels within it, however sparse: a real scene's few polygons get as many chips as a whole
    synthetic scene (the chip is then placed over some of its labels). Only whether each tile holds
    labels is needed to draw: the tiles themselves are needed only to cut.
    """

    def __init__(
        self,
        labelled: Sequence[bool | np.bool_],
        chip_size: int = 128,
        chips_per_epoch: int = 256,
        seed: int = 0,
        augment: bool = True,
        groups: Sequence[int] | None = None,
    ) -> None:
        if chip_size < 1 or chips_per_epoch < 1:
            raise ValueError(f"chip_size and chips_per_epoch must be >= 1, got {chip_size}, {chips_per_epoch}")
        if groups is not None and len(groups) != len(labelled):
            raise ValueError(f"got {len(groups)} group ids for {len(labelled)} images")
        if not any(labelled):
            raise ValueError(f"no labelled pixels in any label array (all are IGNORE={IGNORE})")
        self.chip_size = chip_size
        self.chips_per_epoch = chips_per_epoch
        self.seed = seed
        self.augment = augment
        flags = np.array([bool(x) for x in labelled], dtype=np.float64)
        group = np.zeros(len(flags), dtype=np.int64) if groups is None else np.asarray(groups)
        per_group = {g: flags[group == g].sum() for g in set(group.tolist())}
        weights = np.array([w / per_group[g] if w else 0.0 for w, g in zip(flags, group.tolist())])
        self.tile_weights = weights / weights.sum()

    def draw(self, epoch: int, index: int) -> tuple[int, np.random.Generator]:
        """The tile chip `index` of `epoch` comes from, and the RNG that then places and augments it."""
        if not 0 <= index < self.chips_per_epoch:
            raise IndexError(index)
        rng = np.random.default_rng([self.seed, epoch, index])
        return int(rng.choice(len(self.tile_weights), p=self.tile_weights)), rng

    def cut(self, image: np.ndarray, label: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """The drawn chip of one (C,H,W) tile and its (H,W) label: float32 and int64 copies, never views."""
        s = self.chip_size
        image = pad(np.asarray(image, dtype=np.float32), s, 0.0)
        labels = pad(np.asarray(label, dtype=np.uint8), s, IGNORE)
        h, w = labels.shape
        for _ in range(_MAX_DRAWS):
            y, x = int(rng.integers(0, h - s + 1)), int(rng.integers(0, w - s + 1))
            chip = labels[y : y + s, x : x + s]
            if (chip != IGNORE).any():
                break
        else:  # a sparse tile: centre the chip on one of its labelled pixels
            rows, cols = np.nonzero(labels != IGNORE)
            k = int(rng.integers(0, rows.size))
            y, x = min(max(int(rows[k]) - s // 2, 0), h - s), min(max(int(cols[k]) - s // 2, 0), w - s)
            chip = labels[y : y + s, x : x + s]
        window = image[:, y : y + s, x : x + s]
        if self.augment:
            k = int(rng.integers(0, 4))
            window, chip = np.rot90(window, k, axes=(1, 2)), np.rot90(chip, k)
            if rng.random() < 0.5:
                window, chip = window[:, :, ::-1], chip[:, ::-1]
        return np.array(window, dtype=np.float32, order="C"), np.array(chip, dtype=np.int64, order="C")


class ChipDataset(Dataset):
    """Random, augmented square chips from whole tiles held in memory (see ChipSampler).

    Call set_epoch() to get fresh chips. Training reads its tiles from a store with ChipBatches instead.
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
        self.images = [pad(np.asarray(im, dtype=np.float32), chip_size, 0.0) for im in images]
        self.labels = [pad(np.asarray(lb, dtype=np.uint8), chip_size, IGNORE) for lb in labels]
        self.sampler = ChipSampler(
            [np.any(lb != IGNORE) for lb in self.labels], chip_size, chips_per_epoch, seed, augment, groups
        )
        self.epoch = 0

    @property
    def tile_weights(self) -> np.ndarray:
        return self.sampler.tile_weights

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.sampler.chips_per_epoch

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        t, rng = self.sampler.draw(self.epoch, index)
        image, label = self.sampler.cut(self.images[t], self.labels[t], rng)
        return torch.from_numpy(image), torch.from_numpy(label)


TileReader = Callable[[int], tuple[np.ndarray, np.ndarray]]  # tile index -> (C,H,W) image, (H,W) label


class ChipBatches:
    """An epoch's chips batch by batch, each batch reading only the tiles its chips come from.

    A batch's tiles are read through `mapper` (a thread pool), each once, whatever number of its chips
    it gives, and dropped as soon as they are cut; the next batch is read while the caller trains on
    this one. Alive at once: the tiles being read (at most one per reader thread, and never more than
    `batch_size`) and two batches of chips. `normalise` maps a (N,C,H,W) batch to model input.
    """

    def __init__(
        self,
        sampler: ChipSampler,
        read: TileReader,
        batch_size: int,
        mapper: Mapper = serial_map,
        normalise: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.sampler, self.read, self.batch_size, self.mapper, self.normalise = (
            sampler,
            read,
            batch_size,
            mapper,
            normalise,
        )

    def __len__(self) -> int:
        return -(-self.sampler.chips_per_epoch // self.batch_size)

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        starts = range(0, self.sampler.chips_per_epoch, self.batch_size)
        return read_ahead(lambda start: self._batch(epoch, start), starts)

    def _batch(self, epoch: int, start: int) -> tuple[torch.Tensor, torch.Tensor]:
        by_tile: dict[int, list[tuple[int, np.random.Generator]]] = {}
        stop = min(start + self.batch_size, self.sampler.chips_per_epoch)
        for position, index in enumerate(range(start, stop)):
            t, rng = self.sampler.draw(epoch, index)
            by_tile.setdefault(t, []).append((position, rng))
        images: list = [None] * (stop - start)
        labels: list = [None] * (stop - start)
        for chips in self.mapper(self._cut, list(by_tile.items())):
            for position, (image, label) in chips:
                images[position], labels[position] = image, label
        x = np.stack(images)
        if self.normalise is not None:
            x = self.normalise(x)
        return torch.from_numpy(x), torch.from_numpy(np.stack(labels))

    def _cut(self, item: tuple[int, list[tuple[int, np.random.Generator]]]) -> list:
        tile, draws = item
        image, label = self.read(tile)
        return [(position, self.sampler.cut(image, label, rng)) for position, rng in draws]
