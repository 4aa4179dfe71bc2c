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
from dataclasses import dataclass
from typing import Sequence

from torch import nn

from geo_assets.geo.store import Store
from geo_assets.geo.tilework import Mapper
from geo_assets.ml.data import Normalisation
from geo_assets.ml.device import select_device
from geo_assets.ml.inference import predict_tiles
from geo_assets.ml.predict import load_model

log = logging.getLogger(__name__)

MODELS_KEPT = 4  # exported models kept loaded per process (a long-lived worker serves many versions)
_models: OrderedDict[tuple[str, str], nn.Module] = OrderedDict()
_lock = threading.Lock()  # torch.export.load is not thread-safe: one load at a time per process


def cached_model(store: Store, key: str, device: str) -> nn.Module:
    """The exported model at `key`, loaded once per process and device."""
    name = (store.uri(key), device)
    with _lock:
        if name in _models:
            _models.move_to_end(name)
            return _models[name]
        started = time.perf_counter()
        with store.local_copy(key) as path:  # torch.export.load needs a local file
            model = load_model(path, device)
        _models[name] = model
        while len(_models) > MODELS_KEPT:
            _models.popitem(last=False)
    log.info("loaded model %s on %s in %.2f s", store.uri(key), device, time.perf_counter() - started)
    return model


@dataclass(frozen=True)
class PredictChunk:
    """Predict a chunk of imagery tiles (manifest entries) with one exported model version."""

    store: Store
    weights: str  # the key of the version's model.pt2
    device: str  # as configured: auto, cpu, cuda, cuda:N; resolved where the chunk runs
    prefix: str  # where the class tiles go
    batch_size: int  # tiles per forward pass
    normalise: Normalisation | None = None  # the version's input normalisation (None: legacy scaling)

    @property
    def min_items(self) -> int:
        return self.batch_size  # a chunk smaller than a forward batch wastes the batching

    def _device(self) -> str:
        return str(select_device(self.device))

    def warm(self) -> None:
        cached_model(self.store, self.weights, self._device())

    def __call__(self, entries: Sequence[dict], mapper: Mapper) -> list[dict]:
        device = self._device()
        model = cached_model(self.store, self.weights, device)
        return predict_tiles(self.store, model, select_device(device), list(entries), self.prefix, self.batch_size, mapper,
                             normalise=self.normalise)
