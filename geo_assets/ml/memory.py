"""What training and evaluation hold in memory, bounded by their settings and checked before any tile is read.

Both stream their tiles (ml.pairs.SetTiles), so what they hold does not grow with the set:

- training holds the tiles being cut into chips (one per reader thread, never more than `batch_size`,
  each dropped once cut) and two batches of chips (the one trained on, the next one read ahead);
- evaluation holds two batches of whole tiles (the one predicted, the next one read ahead).

Prediction's forward pass is bounded the same way (`check_prediction_batch`), and the layout probe
measures no batch past it.

Only the sets' manifest entries (a few hundred bytes a tile) grow with the set. The bound below is
on tile pixels; bytes follow from the bands: a float32 input band is 4 bytes a pixel.
"""

from __future__ import annotations

MAX_HELD_PIXELS = 2**25  # tile pixels held at once: e.g. two batches of 16 tiles of 1024 px; 800 MB at 6 bands


def training_bytes(batch_size: int, chip_size: int, tile_size: int, bands: int) -> int:
    """Training's peak in tile data: `batch_size` tiles being cut (model bands as float32, the file's
    DN while decoding, about 2 x 4 bytes a band, and labels) and two batches of chips (float32 bands,
    int64 labels)."""
    return batch_size * tile_size**2 * (8 * bands + 2) + 2 * batch_size * chip_size**2 * (4 * bands + 8)


def evaluation_bytes(batch_size: int, tile_size: int, bands: int) -> int:
    """Evaluation's peak in tile data: two batches of tiles (float32 bands, uint8 labels) and one batch
    stacked for the model, beside its activations."""
    return 3 * batch_size * tile_size**2 * (4 * bands + 1)


def check_tiles_held(what: str, batch_size: int, tiles_per_batch: int, tile_size: int) -> None:
    """Refuse, before any work, a `batch_size` whose tiles held at once pass MAX_HELD_PIXELS."""
    held = batch_size * tiles_per_batch * tile_size**2
    if held > MAX_HELD_PIXELS:
        most = max(1, MAX_HELD_PIXELS // (tiles_per_batch * tile_size**2))
        raise ValueError(
            f"{what} with batch_size {batch_size} on tiles of {tile_size} px holds {held:,} tile pixels at once; "
            f"the limit is {MAX_HELD_PIXELS:,}: use batch_size {most} or less (or smaller tiles)"
        )


# Prediction: a forward pass holds batch_size windows of (tile + 2 x margin)² pixels, as float32 input
# bands and, far larger, the model's activations on each of those pixels (a U-Net keeps several
# feature maps of base_channels and more a pixel). Bounded like a training batch (config.MAX_BATCH_PIXELS,
# batch_size x chip_size²): 9 tiles of 2048 px with margins of 256 px (59 million pixels) passed 8.7 GB.
MAX_FORWARD_PIXELS = 2**24  # e.g. 256 tiles of 256 px, 4 of 2048 px; one tile of 4096 px


def max_forward_batch(window: int) -> int:
    """The most windows of `window` px a forward pass may hold (0: not even one)."""
    return MAX_FORWARD_PIXELS // window**2


def check_prediction_batch(batch_size: int | None, tile_size: int, margin: int, bands: int) -> None:
    """Refuse, before any tile is read, a prediction whose forward pass would pass MAX_FORWARD_PIXELS.
    `batch_size` None (measured) must fit one window: the measurement then stays within the bound."""
    window = tile_size + 2 * margin
    batch = batch_size or 1
    pixels = batch * window**2
    if pixels <= MAX_FORWARD_PIXELS:
        return
    most = max_forward_batch(window)
    fix = (
        f"use batch_size {most} or less, or a smaller margin"
        if most
        else "not even one tile fits: use a smaller margin or smaller tiles"
    )
    raise ValueError(
        f"predictions with batch_size {batch_size or 'auto'} on tiles of {tile_size} px with margin {margin} px: "
        f"a forward pass holds batch_size x (tile + 2 x margin)² = {batch} x {window}² = {pixels:,} pixels "
        f"({pixels * 4 * bands / 2**30:.1f} GiB of float32 input at {bands} bands, and the model's activations on "
        f"every pixel); the limit is {MAX_FORWARD_PIXELS:,} pixels: {fix}"
    )
