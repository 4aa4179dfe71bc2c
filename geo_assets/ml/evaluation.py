"""A model version scored on an evaluation set batch by batch: each batch's tiles are read (the next
batch while this one is predicted), normalised, predicted and counted into one confusion matrix, so
memory does not grow with the set (see ml.memory). No torch at import: the code location loads it."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import numpy as np

from geo_assets.engine.batches import Mapper
from geo_assets.engine.threads import read_ahead
from geo_assets.geo.landcover import CLASSES, IGNORE
from geo_assets.geo.manifests import DatasetManifest
from geo_assets.geo.store import Store
from geo_assets.ml import registry
from geo_assets.ml.inputs import Normalise
from geo_assets.ml.memory import check_tiles_held
from geo_assets.ml.metrics import confusion_matrix
from geo_assets.ml.pairs import SetTiles

Predict = Callable[[np.ndarray], np.ndarray]  # (N,C,H,W) model input -> (N,H,W) classes


def evaluate(
    store: Store, record: dict, evaluation_set: DatasetManifest, mapper: Mapper, device, batch_size: int
) -> np.ndarray:
    """The (K,K) confusion matrix of the model version `record` on `evaluation_set`."""
    tiles = SetTiles.of(store, evaluation_set)  # manifests only: no tile read yet
    check_tiles_held("evaluation", batch_size, 2, tiles.tile_size)
    from geo_assets.ml.export import load_model
    from geo_assets.ml.predict import predict_batch

    with store.local_copy(record["weights"]) as weights:  # torch.export.load needs a local file
        model = load_model(weights, device)
    return confusion(
        tiles, lambda x: predict_batch(model, x, device), registry.normalisation(record), mapper, batch_size
    )


def confusion(tiles: SetTiles, predict: Predict, normalise: Normalise, mapper: Mapper, batch_size: int) -> np.ndarray:
    """Summed confusion matrix of `predict` over `tiles`, `batch_size` tiles a batch."""

    def read(indices: range) -> tuple[np.ndarray, np.ndarray]:
        pairs = mapper(partial(tiles.read, normalise=normalise), list(indices))
        return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])

    cm = np.zeros((len(CLASSES), len(CLASSES)), dtype=np.int64)
    batches = [range(i, min(i + batch_size, len(tiles))) for i in range(0, len(tiles), batch_size)]
    for x, y in read_ahead(read, batches):
        cm += confusion_matrix(predict(x), y, len(CLASSES), ignore=IGNORE)
        del x, y  # before the batch after next is read: two batches alive at most
    return cm
