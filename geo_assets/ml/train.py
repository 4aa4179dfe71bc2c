"""Train a zoo model on (image, label) tiles with a reproducible, seeded loop."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from geo_assets.geo.landcover import IGNORE
from geo_assets.ml.data import ChipBatches, ChipDataset, validate_pairs
from geo_assets.ml.device import cores, select_device
from geo_assets.ml.models import build_model

ProgressCallback = Callable[[int, int, float], None]


@dataclass
class TrainConfig:
    architecture: str = "unet"
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    epochs: int = 8
    batch_size: int = 8
    learning_rate: float = 2e-3
    chip_size: int = 128
    chips_per_epoch: int = 256
    seed: int = 0
    device: str = "auto"


@dataclass
class TrainResult:
    model: nn.Module  # eval mode, on CPU (portable: pickling, export)
    loss_curve: list[float]  # mean batch loss per epoch
    device: str  # device the training ran on
    seconds: float


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds all CUDA devices


@contextmanager
def _all_cores(device: torch.device) -> Iterator[None]:
    """Train on every core this process may use, whatever the process set before: the split of a
    convolution's backward pass over threads changes the weights' last bits, so a version trained in a
    step that predicted first (which sets its own thread count) or in a remote container must see the
    same count to give the same bytes on the same machine."""
    before = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(cores())
    try:
        yield
    finally:
        torch.set_num_threads(before)


def train(
    images: Sequence[np.ndarray],
    labels: Sequence[np.ndarray],
    in_channels: int,
    num_classes: int,
    config: TrainConfig,
    progress: ProgressCallback | None = None,
    groups: Sequence[int] | None = None,
) -> TrainResult:
    """Images: normalized float32 (C,H,W); labels: uint8 (H,W) with IGNORE for unlabelled; all in memory.

    `groups`: the acquisition of each image. Given, every acquisition is drawn alike and every chip
    weighs alike in the loss, however few of its pixels are labelled: a real scene's few polygons
    mixed with whole synthetic scenes still teach the model. Without, chips are drawn from every
    labelled image alike and the loss is the mean over labelled pixels."""
    validate_pairs(images, labels, in_channels=in_channels, num_classes=num_classes)
    _check(config)
    tiles = ChipDataset(images, labels, config.chip_size, config.chips_per_epoch, seed=config.seed, groups=groups)
    chips = ChipBatches(tiles.sampler, lambda t: (tiles.images[t], tiles.labels[t]), config.batch_size)
    return train_chips(chips, in_channels, num_classes, config, progress, weigh_chips=groups is not None)


def train_chips(
    chips: ChipBatches,
    in_channels: int,
    num_classes: int,
    config: TrainConfig,
    progress: ProgressCallback | None = None,
    weigh_chips: bool = True,
) -> TrainResult:
    """Train on chips made batch by batch (the tiles need not be in memory; see ChipBatches), their
    batch size and sampling those of `config`. `weigh_chips`: every chip weighs alike in the loss (as
    with `groups` in `train`), else the loss is the mean over labelled pixels."""
    _check(config)
    sampler = chips.sampler
    if (chips.batch_size, sampler.chip_size, sampler.chips_per_epoch, sampler.seed) != (
        config.batch_size,
        config.chip_size,
        config.chips_per_epoch,
        config.seed,
    ):
        raise ValueError("the chips' batch size, chip size, chips per epoch and seed must be the training config's")
    device = select_device(config.device)  # fail on a bad device before building anything
    with _all_cores(device):
        return _train(chips, in_channels, num_classes, config, progress, device, weigh_chips)


def _check(config: TrainConfig) -> None:
    if config.epochs < 1 or config.batch_size < 1 or config.learning_rate <= 0:
        raise ValueError(
            f"need epochs >= 1, batch_size >= 1, learning_rate > 0; got {config.epochs}, "
            f"{config.batch_size}, {config.learning_rate}"
        )


def _chip_loss(per_pixel: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean over chips of each chip's mean loss over its labelled pixels: a chip of a few polygons
    weighs as much as a fully labelled one (for fully labelled chips: the plain pixel mean)."""
    counts = (labels != IGNORE).flatten(1).sum(1)
    labelled = counts > 0
    return (per_pixel.flatten(1).sum(1)[labelled] / counts[labelled]).mean()


def _train(chips: ChipBatches, in_channels, num_classes, config, progress, device, weigh_chips) -> TrainResult:
    start = time.perf_counter()
    _seed_everything(config.seed)

    model = build_model(config.architecture, in_channels, num_classes, **config.hyperparameters).to(device)
    # Per pixel (ignored pixels: 0) when chips weigh alike, else the mean over labelled pixels.
    loss_fn = nn.CrossEntropyLoss(ignore_index=IGNORE, reduction="none" if weigh_chips else "mean")
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    # OneCycle: warm-up then anneal; converges well in the few epochs we can afford.
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=config.learning_rate, total_steps=config.epochs * len(chips)
    )

    loss_curve: list[float] = []
    model.train()
    for epoch in range(config.epochs):
        losses: list[float] = []
        for x, y in chips.epoch(epoch):
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            optimizer.zero_grad(set_to_none=True)
            if (y != IGNORE).any():  # an all-IGNORE batch would give a NaN loss
                loss = loss_fn(model(x), y)
                if weigh_chips:
                    loss = _chip_loss(loss, y)
                loss.backward()
                optimizer.step()
                losses.append(loss.item())
            scheduler.step()  # step regardless so the schedule length stays exact
            del x, y  # before the batch after next is read: two batches of chips alive at most
        mean_loss = float(np.mean(losses)) if losses else float("nan")
        loss_curve.append(mean_loss)
        if progress is not None:
            progress(epoch + 1, config.epochs, mean_loss)

    model.eval().cpu()
    return TrainResult(model=model, loss_curve=loss_curve, device=str(device), seconds=time.perf_counter() - start)
