"""Inference over stored imagery tiles, writing class COGs on the exact tile grid.

The tile loop is a pipeline: I/O threads read batches ahead and write finished ones, while
`layout.streams` inference threads run the model, so reads and writes overlap inference. At most
`depth(layout)` batches are in flight (read, in inference or being written) at any time, which
bounds memory whatever the region's size (with margins, plus a cache of decoded tiles of at most
geo_assets.geo.margins.CACHE_BYTES). The layout (batch size, streams, threads) is measured
on the machine unless given (geo_assets.ml.layout).

With a `margin`, each tile is read with that many pixels of its neighbours around it
(geo_assets.geo.margins), inferred whole and cropped back to the tile, so a pixel at a tile's edge
sees the same context as one in its middle, and class boundaries do not break at tile edges.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import CancelledError, Future, wait
from functools import partial

import numpy as np
import torch

from geo_assets.engine.batches import Mapper
from geo_assets.engine.threads import shared_pool
from geo_assets.geo.cog import write_cog
from geo_assets.geo.landcover import CLASSES, IGNORE
from geo_assets.geo.manifests import PredictionTile
from geo_assets.geo.margins import TileCache, with_neighbours
from geo_assets.geo.store import Store
from geo_assets.geo.tiling import pixel_digest
from geo_assets.ml.inputs import Normalise, read_tile
from geo_assets.ml.layout import Layout, check_batch_size, choose_layout
from geo_assets.ml.predict import classify
from geo_assets.ml.runtime import Runtime, as_runtime

PROGRESS_SECONDS = 5.0  # progress is reported this often, and at the end


class TileError(RuntimeError):
    """A tile that could not be read, predicted or written, named by its key."""


def write_prediction(store: Store, prefix: str, item: tuple[dict, np.ndarray, dict]) -> PredictionTile:
    entry, classes, profile = item
    key = f"{prefix}/tiles/{entry['key']}.tif"
    with store.writing(key) as tmp:
        write_cog(tmp, classes, profile["crs"], profile["transform"], IGNORE, ["class"])
    counts = np.bincount(classes.ravel(), minlength=256)[: len(CLASSES)]
    return {"key": entry["key"], "path": key, "digest": pixel_digest(classes), "class_counts": [int(c) for c in counts]}


def depth(layout: Layout) -> int:
    """Batches in flight at most: one in inference per stream, as many read ahead, and two more
    so a write or a slow read never leaves a stream waiting."""
    return 2 * layout.streams + 2


def _keys(batch: list[dict]) -> str:
    return batch[0]["key"] if len(batch) == 1 else f"{batch[0]['key']}..{batch[-1]['key']}"


def _named(what: str, fn: Callable, entry: dict, *args):
    try:
        return fn(*args)
    except Exception as exc:
        raise TileError(f"tile {entry['key']}: {what} failed: {exc}") from exc


def _read_batch(
    store: Store, mapper: Mapper, normalise: Normalise | None, margin: int, cache: TileCache | None, batch: list[dict]
) -> list[tuple]:
    tiles = mapper(lambda e: _named("read", read_tile, e, store, e, normalise, margin, cache), batch)
    shapes = {t[0].shape for t in tiles}
    if len(shapes) != 1:
        raise TileError(f"tiles {_keys(batch)} differ in shape: {sorted(shapes)}")
    return tiles


def _write_batch(store: Store, prefix: str, mapper: Mapper, batch: list[dict], classes, tiles) -> list[dict]:
    items = [(e, c, t[2]) for e, c, t in zip(batch, classes, tiles)]
    return mapper(lambda item: _named("write", write_prediction, item[0], store, prefix, item), items)


def predict_tiles(
    store: Store,
    model: Runtime | torch.nn.Module,
    device,
    entries: list[dict],
    prefix: str,
    batch_size: int | str | None = None,
    mapper: Mapper | None = None,
    progress: Callable[[int, int], None] | None = None,
    normalise: Normalise | None = None,
    *,
    layout: Layout | None = None,
    on_layout: Callable[[Layout], None] | None = None,
    cpus: int | None = None,
    margin: int = 0,
) -> list[dict]:
    """Predict every tile of `entries` into `prefix`/tiles; return their entries in the same order.

    `model` is a Runtime (geo_assets.ml.runtime) or a torch module run eagerly on `device`.
    `batch_size` None or "auto" is measured with the rest of the layout, on `cpus` cores (default:
    all this process may use; a worker sharing the machine passes its share); `layout` fixes all of it.
    `mapper` fans out each batch's reads and writes (default: one I/O thread per batch).
    `on_layout` hears the layout before the first tile; `progress(done, total)` is called every
    few seconds and at the end. A failed tile raises TileError naming its key: batches not yet
    started are dropped, those in flight finish, and every tile written is whole (writes are atomic).
    `margin` (px, a multiple of the model's pad multiple) reads each tile with its neighbours' pixels
    around it: those an entry lists in `neighbours` (geo.margins.with_neighbours), else the other
    `entries` around it on the grid; the class tiles are the centre of each prediction.
    """
    runtime = as_runtime(model, device)
    batch_size = check_batch_size(batch_size)
    if margin % runtime.multiple:
        raise ValueError(
            f"margin {margin} px is not a multiple of the model's pad multiple {runtime.multiple}: "
            "the tile would not sit on the model's stride lattice"
        )
    if not entries:
        return []
    if margin:
        entries = with_neighbours(entries)
    if layout is None:
        sample = _named("read", read_tile, entries[0], store, entries[0], normalise, margin)[0]
        layout = choose_layout(runtime, sample, batch_size, cpus)
    if on_layout:
        on_layout(layout)
    mapper = mapper or (lambda fn, items: [fn(i) for i in items])
    pipeline = _Pipeline(store, runtime, prefix, mapper, normalise, margin, layout, progress)
    return pipeline.run(entries)


class _Pipeline:
    """One call's tile loop: reads on the I/O pool, inference on the inference pool, writes on the I/O
    pool again, at most `depth(layout)` batches in flight, results collected in order. A failure stops
    it: queued work is dropped, running work finishes, and nothing starts after."""

    def __init__(
        self,
        store: Store,
        runtime: Runtime,
        prefix: str,
        mapper: Mapper,
        normalise: Normalise | None,
        margin: int,
        layout: Layout,
        progress: Callable[[int, int], None] | None,
    ):
        self.runtime, self.margin, self.layout, self.progress = runtime, margin, layout, progress
        # Decoded tiles for the margins: each is a neighbour of the tiles after it and of the next row's.
        self.read = partial(_read_batch, store, mapper, normalise, margin, TileCache() if margin else None)
        self.write = partial(_write_batch, store, prefix, mapper)
        # The process's pools, not new ones per call: their threads keep GDAL's per-thread state (engine.threads).
        self.io = shared_pool("tile-io", layout.io_threads)
        self.inference = shared_pool("inference", layout.streams)
        # What this call put on the pools and has not finished (finished ones leave: their results are tiles).
        self.pending: set[Future] = set()
        self.lock = threading.RLock()  # reentrant: a future already done runs its callback in the submitting thread
        self.stopped = False
        self.results: list[dict] = []

    def run(self, entries: list[dict]) -> list[dict]:
        size = self.layout.batch_size
        batches = [entries[i : i + size] for i in range(0, len(entries), size)]
        in_flight: deque[Future] = deque()
        reported = time.perf_counter()
        with self.runtime.session(self.layout.threads) as forward:
            try:
                for batch in batches:
                    if len(in_flight) >= depth(self.layout):
                        reported = self._collect(in_flight, len(entries), reported)  # the oldest batch first
                    reading = self._submit(self.io, self.read, batch)
                    in_flight.append(self._submit(self.inference, self._infer, forward, batch, reading))
                while in_flight:
                    reported = self._collect(in_flight, len(entries), reported)
            except BaseException:
                self._stop()
                raise
        return self.results

    def _infer(self, forward: Callable, batch: list[dict], reading: Future) -> Future:
        tiles = reading.result()
        runtime, margin = self.runtime, self.margin
        try:
            classes = classify(forward, np.stack([t[0] for t in tiles]), runtime.multiple, None, runtime.in_channels)
            if margin:
                classes = classes[:, margin:-margin, margin:-margin]
            classes[~np.stack([t[1] for t in tiles])] = IGNORE
        except Exception as exc:
            raise TileError(f"tile(s) {_keys(batch)}: inference failed: {exc}") from exc
        return self._submit(self.io, self.write, batch, classes, tiles)

    def _collect(self, in_flight: deque[Future], total: int, reported: float) -> float:
        """Wait for the oldest batch's write; report progress every few seconds and at the end."""
        self.results.extend(in_flight.popleft().result().result())
        now = time.perf_counter()
        if self.progress and (now - reported >= PROGRESS_SECONDS or len(self.results) == total):
            self.progress(len(self.results), total)
            return now
        return reported

    def _finished(self, future: Future) -> None:
        with self.lock:
            self.pending.discard(future)

    def _submit(self, pool, fn, *args) -> Future:
        with self.lock:
            if self.stopped:
                raise CancelledError("the tile loop was stopped")
            future = pool.submit(fn, *args)
            self.pending.add(future)
            future.add_done_callback(self._finished)
            return future

    def _stop(self) -> None:
        # Queued reads, inferences and writes are dropped; running ones finish before this returns,
        # and none starts after (submissions are refused from here on).
        with self.lock:
            self.stopped = True
            unfinished = list(self.pending)
        for future in unfinished:
            future.cancel()
        wait(unfinished)
