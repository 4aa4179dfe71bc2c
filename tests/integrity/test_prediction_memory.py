"""Prediction's memory is bounded like training's: batch_size x (tile + 2 x margin)² pixels in a forward
pass (geo_assets.ml.memory.MAX_FORWARD_PIXELS). Past it the step refuses before reading any tile, naming
the settings and the bound, and the layout probe never measures a batch past it."""

import numpy as np
import pytest
import torch
from integrity_world import cut_holdout, predict
from tiny_world import MODEL

from geo_assets.cli.demo import failure_message
from geo_assets.ml import registry
from geo_assets.ml.layout import batches_to_try, choose_layout
from geo_assets.ml.memory import MAX_FORWARD_PIXELS
from geo_assets.ml.runtime import load_runtime


@pytest.fixture(scope="module")
def imagery_2048(registered, store) -> dict:
    """tiny-holdout in one tile of 2048 px, whose file is then removed: a step that read it would fail on that."""
    manifest = cut_holdout(registered, store, 2048)
    for tile in manifest["tiles"]:
        store.delete(tile["path"])
    return manifest


def test_an_in_range_config_past_the_bound_is_refused_before_any_tile_is_read(trained, registered, store, imagery_2048):
    # Each setting is in range (batch_size up to 256, margin up to 256 px): together they pass 8.7 GB.
    result = predict(registered, store, trained, tile_size=2048, batch_size=9, margin=256)
    assert not result.success
    message = failure_message(result)
    assert (
        "predictions with batch_size 9 on tiles of 2048 px with margin 256 px: a forward pass holds "
        "batch_size x (tile + 2 x margin)² = 9 x 2560² = 58,982,400 pixels"
    ) in message, message
    assert f"the limit is {MAX_FORWARD_PIXELS:,} pixels: use batch_size 2 or less" in message, message
    assert not [k for k in store.list("predictions") if "2048px" in k]


def test_the_layout_probe_measures_no_batch_past_the_bound(trained, store):
    assert batches_to_try(256 + 2 * 32) == (1, 2, 4, 8)
    assert batches_to_try(2048) == (1, 2, 4)  # the probe tried 8 here: 3.4 GB
    assert batches_to_try(2048 + 2 * 256) == (1, 2)
    runtime = load_runtime(
        store, f"{registry.model_prefix(MODEL, trained)}/{registry.WEIGHTS_FILE}", torch.device("cpu"), "torch"
    )
    sample = np.zeros((len(runtime_bands(store, trained)), 2560, 2560), dtype=np.float32)
    with pytest.raises(ValueError, match="batch_size 9 of 2560 px windows passes the forward pass's bound"):
        choose_layout(runtime, sample, 9)


def runtime_bands(store, version: str) -> list[str]:
    return store.read_json(f"{registry.model_prefix(MODEL, version)}/{registry.MODEL_FILE}")["bands"]
