"""Prediction work by chunks of tiles: what one batch runs, in the step's process or on a Dask worker.

A chunk is named by small things only (the store, the exported model's key, the output prefix), so it
pickles in a few hundred bytes; the worker loads the model itself, once per process, and reads and
writes tiles through the store.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from geo_assets.engine.batches import Mapper
from geo_assets.geo.store import Store
from geo_assets.ml.device import select_device
from geo_assets.ml.normalisation import Normalisation
from geo_assets.ml.options import requested

if TYPE_CHECKING:
    from geo_assets.ml.runtime import Runtime

# torch and the runtimes are imported where a chunk runs, not where it is built: the step (and the
# code location's other processes) only name the work.

log = logging.getLogger(__name__)

MODELS_KEPT = 4  # model versions kept loaded per process (a long-lived worker serves many versions)
_models: OrderedDict[tuple[str, str, str], Runtime] = OrderedDict()
_lock = threading.Lock()  # torch.export.load is not thread-safe: one load at a time per process
_inference: dict[tuple[str, str, str], dict] = {}  # the runtime and layout a process last predicted with


def cached_runtime(store: Store, key: str, device: str, runtime: str | None) -> Runtime:
    """The model version at `key` in its inference runtime, loaded once per process, device and runtime."""
    from geo_assets.ml.runtime import load_runtime

    name = (store.uri(key), device, requested(runtime))
    with _lock:
        if name in _models:
            _models.move_to_end(name)
            return _models[name]
        started = time.perf_counter()
        model = load_runtime(store, key, select_device(device), runtime)
        _models[name] = model
        while len(_models) > MODELS_KEPT:
            _models.popitem(last=False)
    log.info(
        "loaded model %s on %s (%s) in %.2f s%s",
        model.source or store.uri(key),  # the file the runtime runs: model.onnx for onnxruntime
        device,
        model.name,
        time.perf_counter() - started,
        f"; {model.note}" if model.note else "",
    )
    return model


def _share_of_cores() -> int | None:
    """On a Dask worker, the threads it was given (its share of the machine's cores, so workers beside
    each other do not each measure a layout for every core); elsewhere None: all this process may use."""
    try:
        from distributed import get_worker

        return int(get_worker().state.nthreads)
    except (ImportError, ValueError, AttributeError):
        return None


@dataclass(frozen=True)
class PredictChunk:
    """Predict a chunk of imagery tiles (manifest entries) with one exported model version."""

    store: Store
    weights: str  # the key of the version's model.pt2
    device: str  # as configured: auto, cpu, cuda, cuda:N; resolved where the chunk runs
    prefix: str  # where the class tiles go
    batch_size: int | None  # tiles per forward pass; None: measured with the thread layout
    normalise: Normalisation | None = None  # the version's input normalisation (None: legacy scaling)
    runtime: str | None = None  # inference runtime (geo_assets.ml.runtime): None is the installed default
    margin: int = 0  # px of the neighbours read around each tile (entries list them: geo.margins.with_neighbours)

    @property
    def min_items(self) -> int:
        return self.batch_size or 16  # a chunk smaller than a forward batch wastes the batching

    def _device(self) -> str:
        return str(select_device(self.device))

    def warm(self) -> None:
        cached_runtime(self.store, self.weights, self._device(), self.runtime)

    def __call__(self, entries: Sequence[dict], mapper: Mapper) -> list[dict]:
        from geo_assets.ml.inference import predict_tiles

        device = self._device()
        model = cached_runtime(self.store, self.weights, device, self.runtime)

        def on_layout(layout) -> None:
            _inference[self._name()] = {**model.describe(), **layout.metadata()}
            log.info("inference on %s (%s): %s", model.name, device, layout)

        return predict_tiles(
            self.store,
            model,
            select_device(device),
            list(entries),
            self.prefix,
            self.batch_size,
            mapper,
            normalise=self.normalise,
            on_layout=on_layout,
            cpus=_share_of_cores(),
            margin=self.margin,
        )

    def _name(self) -> tuple[str, str, str]:
        return (self.store.uri(self.weights), self._device(), requested(self.runtime))

    def inference(self) -> dict:
        """The runtime and layout this process predicted with (runtime, device, batch size, streams,
        threads, measured or cached); on a cluster each worker chooses its own, and logs it."""
        return _inference.get(self._name()) or {
            "runtime": requested(self.runtime),
            "layout": "per worker: see the step log",
        }
