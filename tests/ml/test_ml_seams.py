"""No seams: tiles predicted with a margin from their neighbours agree with one pass over the whole region."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from geo_assets.geo.cog import read_raster
from geo_assets.geo.margins import DEFAULT_MARGIN
from geo_assets.ml.inference import predict_tiles
from geo_assets.ml.layout import Layout
from geo_assets.ml.predict import classify
from geo_assets.ml.runtime import load_runtime

CPU = torch.device("cpu")
SEAM = 16  # px either side of an edge between two tiles


def _mosaic(tiles: dict) -> np.ndarray:
    """(..., rows, cols) of the tiles keyed col_row, pasted on their grid."""
    cols = 1 + max(int(k.split("_")[0]) for k in tiles)
    rows = 1 + max(int(k.split("_")[1]) for k in tiles)
    return np.concatenate(
        [np.concatenate([tiles[f"{c}_{r}"] for c in range(cols)], axis=-1) for r in range(rows)], axis=-2
    )


@pytest.fixture(scope="module")
def region(tiny):
    """The region's mosaic (bands, rows, cols), the runtime, and the seam band: pixels within SEAM px of
    an edge shared by two tiles, where the imagery has data."""
    tiles = {e["key"]: read_raster(tiny.store.path(e["path"]))[0] for e in tiny.entries}
    full = _mosaic(tiles)
    seam = np.zeros(full.shape[1:], dtype=bool)
    size = tiles["0_0"].shape[-1]
    for edge in range(size, full.shape[2], size):
        seam[:, edge - SEAM : edge + SEAM] = True
    for edge in range(size, full.shape[1], size):
        seam[edge - SEAM : edge + SEAM, :] = True
    seam &= (full != 0).any(axis=0)
    return full, load_runtime(tiny.store, tiny.weights, CPU, "onnxruntime"), seam


def whole_region(runtime, full: np.ndarray, margin: int, normalise) -> np.ndarray:
    """One forward pass over the whole region's mosaic; past the region's edge, padded (reflect) as tiles are."""
    padded = np.pad(full, ((0, 0), (margin, margin), (margin, margin)), mode="reflect") if margin else full
    with runtime.session(None) as forward:
        classes = classify(forward, normalise(padded)[None], runtime.multiple, None, runtime.in_channels)[0]
    return classes[margin : margin + full.shape[1], margin : margin + full.shape[2]]


def tiled(tiny, runtime, margin: int) -> np.ndarray:
    results = predict_tiles(
        tiny.store, runtime, CPU, tiny.entries, f"predictions/seams-{margin}", layout=Layout(4, 2, 1, 2), margin=margin
    )  # batches that span rows of tiles
    return _mosaic(dict(zip((r["key"] for r in results), tiny.classes(results))))


def test_default_margin_has_no_seams(tiny, region):
    from geo_assets.ml.normalisation import normalize

    full, runtime, seam = region
    ours, whole = tiled(tiny, runtime, DEFAULT_MARGIN), whole_region(runtime, full, DEFAULT_MARGIN, normalize)
    assert seam.sum() > 10_000
    assert np.mean(ours[seam] == whole[seam]) >= 0.999
    # Nothing else moves either: the whole region agrees, no-data pixels included.
    assert np.mean(ours == whole) >= 0.999


def test_tiles_alone_break_at_their_edges(tiny, region):
    """Without a margin (as before), edge pixels lack their context: the seam band disagrees."""
    from geo_assets.ml.normalisation import normalize

    full, runtime, seam = region
    ours, whole = tiled(tiny, runtime, 0), whole_region(runtime, full, 0, normalize)
    assert np.mean(ours[seam] == whole[seam]) < 0.99
    assert np.mean(ours[~seam] == whole[~seam]) > np.mean(ours[seam] == whole[seam])


def test_margin_must_fit_the_model_and_the_tile(tiny, region):
    _, runtime, _ = region
    with pytest.raises(ValueError, match="multiple of the model's pad multiple 8"):
        predict_tiles(tiny.store, runtime, CPU, tiny.entries, "predictions/never", layout=Layout(1, 1, 1, 1), margin=12)
    with pytest.raises(Exception, match="margin must be an integer between 0 and 32 px"):
        predict_tiles(tiny.store, runtime, CPU, tiny.entries, "predictions/never", layout=Layout(1, 1, 1, 1), margin=40)
    assert not tiny.store.list("predictions/never")


@pytest.mark.parametrize("margin", [-8, 12, 264])
def test_run_config_refuses_a_margin_out_of_bounds(margin):
    from geo_assets.config import PredictionConfig

    with pytest.raises(Exception, match=f"margin must be a multiple of 8 px between 0 and 256, got {margin}"):
        PredictionConfig(margin=margin)


def test_default_margin_fits_small_tiles():
    from geo_assets.geo.margins import default_margin

    assert [default_margin(t) for t in (16, 32, 48, 64, 256, 4096)] == [8, 16, 24, 32, 32, 32]
