import numpy as np
import pytest
import torch

from geo_assets.geo.landcover import IGNORE
from geo_assets.ml.data import ChipDataset
from geo_assets.ml.normalisation import normalize


def test_normalize_scales_and_clips():
    dn = np.array([0, 5000, 10000, 20000, 65535], dtype=np.uint16).reshape(1, 1, 5)
    out = normalize(dn)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out.ravel(), [0.0, 0.5, 1.0, 1.5, 1.5])


def test_normalize_nan_and_negative_and_4d():
    dn = np.array([np.nan, -100.0, 2500.0, np.inf], dtype=np.float64).reshape(1, 1, 2, 2)
    out = normalize(dn)
    assert out.shape == (1, 1, 2, 2) and out.dtype == np.float32
    np.testing.assert_allclose(out.ravel(), [0.0, 0.0, 0.25, 1.5])
    with pytest.raises(ValueError, match="shape"):
        normalize(np.zeros((4, 4)))


def _tile(size=64, seed=0):
    rng = np.random.default_rng(seed)
    label = rng.integers(0, 4, size=(size, size)).astype(np.uint8)
    # Channel 0 encodes the label so image/label alignment after augmentation is checkable.
    image = np.stack([label.astype(np.float32), rng.random((size, size), dtype=np.float32)])
    return image, label


def _items(ds):
    return [ds[i] for i in range(len(ds))]


def test_chips_shape_dtype_and_alignment():
    image, label = _tile()
    ds = ChipDataset([image], [label], chip_size=16, chips_per_epoch=32, seed=1)
    assert len(ds) == 32
    for x, y in _items(ds):
        assert x.shape == (2, 16, 16) and x.dtype == torch.float32
        assert y.shape == (16, 16) and y.dtype == torch.int64
        torch.testing.assert_close(x[0], y.float())  # flips/rotations applied to both alike


def test_chips_deterministic_given_seed_and_epoch():
    image, label = _tile()
    a = _items(ChipDataset([image], [label], chip_size=16, chips_per_epoch=8, seed=3))
    b = _items(ChipDataset([image], [label], chip_size=16, chips_per_epoch=8, seed=3))
    c = _items(ChipDataset([image], [label], chip_size=16, chips_per_epoch=8, seed=4))
    for (xa, ya), (xb, yb) in zip(a, b):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert not all(torch.equal(xa, xc) for (xa, _), (xc, _) in zip(a, c))
    ds = ChipDataset([image], [label], chip_size=16, chips_per_epoch=8, seed=3)
    ds.set_epoch(1)
    assert not all(torch.equal(xa, xd) for (xa, _), (xd, _) in zip(a, _items(ds)))


def test_small_tile_is_padded_with_zero_and_ignore():
    image = np.ones((3, 10, 12), np.float32)
    label = np.zeros((10, 12), np.uint8)
    ds = ChipDataset([image], [label], chip_size=16, chips_per_epoch=4, seed=0)
    for x, y in _items(ds):
        assert x.shape == (3, 16, 16)
        assert (y == IGNORE).sum() == 16 * 16 - 10 * 12
        assert (x[:, y == IGNORE] == 0).all() and (x[:, y != IGNORE] == 1).all()


def test_empty_chips_are_skipped_when_possible():
    image = np.zeros((1, 64, 64), np.float32)
    label = np.full((64, 64), IGNORE, np.uint8)
    label[:32, :32] = 1  # roughly 60% of random 16x16 windows miss this block
    ds = ChipDataset([image], [label], chip_size=16, chips_per_epoch=64, seed=0)
    assert all((y != IGNORE).any() for _, y in _items(ds))


def test_mismatched_inputs_rejected():
    with pytest.raises(ValueError, match="image 0"):
        ChipDataset([np.zeros((1, 8, 8), np.float32)], [np.zeros((8, 9), np.uint8)])


# --- Normalisation: stored with a model version, applied at prediction ------------------------

from geo_assets.ml.normalisation import Normalisation  # noqa: E402


def test_normalisation_is_fitted_on_valid_pixels_and_picks_bands_by_name():
    rng = np.random.default_rng(0)
    a = rng.integers(500, 3000, (3, 8, 8)).astype(np.uint16)
    a[:, 0, :] = 0  # a row of no data: left out of the fit
    norm = Normalisation.fit([a.astype(np.float32)], ["red", "green", "blue"])
    valid = a[:, 1:, :].reshape(3, -1).astype(np.float64)
    np.testing.assert_allclose(norm.offset, -valid.mean(axis=1) / valid.std(axis=1), rtol=1e-6)
    np.testing.assert_allclose(norm.scale, 1 / valid.std(axis=1), rtol=1e-6)
    # Applied to a tile whose bands come in another order, with one more band: picked by name.
    tile = np.stack([a[2], a[1], a[0], np.full((8, 8), 4000, np.uint16)])
    out = norm(tile, ["blue", "green", "red", "nir"])
    assert out.dtype == np.float32 and out.shape == (3, 8, 8)
    np.testing.assert_allclose(out[:, 1:].reshape(3, -1).mean(axis=1), 0, atol=1e-5)
    np.testing.assert_allclose(out[:, 1:].reshape(3, -1).std(axis=1), 1, atol=1e-5)
    assert (out[:, 0, :] == 0).all()  # no data -> 0, the training mean
    with pytest.raises(ValueError, match=r"missing \['red'\]"):
        norm(tile[[0, 1, 3]], ["blue", "green", "nir"])


def test_normalisation_round_trips_through_the_model_record_and_legacy_records_keep_their_rule():
    norm = Normalisation(("blue", "nir"), (0.5, 0.25), (-1.0, -2.0))
    assert Normalisation.from_record({"bands": ["blue", "nir"], "normalisation": norm.to_json()}) == norm
    legacy = Normalisation.from_record({"bands": ["blue", "nir"]})  # a version stored before the record
    dn = np.array([[[0, 5000, 20000]], [[10000, np.nan, 2500]]])
    np.testing.assert_allclose(legacy(dn, ["blue", "nir"]), normalize(dn))
    for bad in [dict(scale=(0.0, 1.0)), dict(offset=(float("nan"), 0.0)), dict(scale=(1.0,))]:
        with pytest.raises(ValueError):
            Normalisation(**{"bands": ("blue", "nir"), "scale": (1.0, 1.0), "offset": (0.0, 0.0), **bad})


def test_sparse_real_labels_are_drawn_as_often_as_whole_synthetic_tiles():
    """A tile with a small labelled polygon is drawn as often as a fully labelled one, and its chips
    lie over its labels: mixing a few real polygons with synthetic scenes reaches the model."""
    full = (np.zeros((1, 128, 128), np.float32), np.zeros((128, 128), np.uint8))
    sparse_label = np.full((128, 128), IGNORE, np.uint8)
    sparse_label[100:106, 5:12] = 2  # 42 labelled pixels
    sparse = (np.ones((1, 128, 128), np.float32), sparse_label)
    ds = ChipDataset(
        [full[0], sparse[0]], [full[1], sparse[1]], chip_size=32, chips_per_epoch=200, seed=0, augment=False
    )
    from_sparse = 0
    for x, y in _items(ds):
        assert (y != IGNORE).any()
        from_sparse += int(x[0, 0, 0] == 1)
    assert 70 < from_sparse < 130
