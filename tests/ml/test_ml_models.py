import re

import numpy as np
import pytest
import torch

from geo_assets.geo.landcover import IGNORE
from geo_assets.ml.models import ARCHITECTURES, build_model
from geo_assets.ml.predict import predict_batch

TINY = {"unet": {"base_channels": 8}, "fcn": {"hidden_channels": 8}}


def test_zoo_contents():
    assert {"unet", "fcn"} <= set(ARCHITECTURES)


def test_unknown_architecture_lists_accepted():
    with pytest.raises(ValueError, match=re.escape("unknown architecture 'foo'; accepted: fcn, unet")):
        build_model("foo", 3, 2)


def test_unknown_hyperparameter_is_named():
    with pytest.raises(ValueError, match="bogus"):
        build_model("unet", 3, 2, base_channels=8, bogus=1)
    with pytest.raises(ValueError, match="depht"):
        build_model("fcn", 3, 2, depht=2)


@pytest.mark.parametrize("arch", ["unet", "fcn"])
def test_forward_shape(arch):
    model = build_model(arch, 4, 5, **TINY[arch]).eval()
    with torch.no_grad():
        assert model(torch.zeros(2, 4, 64, 48)).shape == (2, 5, 64, 48)


def test_unet_256_and_depth():
    with torch.no_grad():
        assert build_model("unet", 3, 2, base_channels=4).eval()(torch.zeros(1, 3, 256, 256)).shape == (1, 2, 256, 256)
        assert build_model("unet", 3, 2, base_channels=4, depth=2).eval()(torch.zeros(1, 3, 12, 20)).shape == (
            1,
            2,
            12,
            20,
        )


def test_fcn_has_no_downsampling():
    with torch.no_grad():
        assert build_model("fcn", 3, 2).eval()(torch.zeros(1, 3, 13, 7)).shape == (1, 2, 13, 7)


@pytest.mark.parametrize("arch", ["unet", "fcn"])
@pytest.mark.parametrize("hw", [(37, 50), (8, 8), (1, 5), (64, 64)])
def test_predict_batch_any_size(arch, hw):
    torch.manual_seed(0)
    model = build_model(arch, 3, 4, **TINY[arch])
    batch = np.random.default_rng(0).random((2, 3, *hw), dtype=np.float32)
    out = predict_batch(model, batch, "cpu")
    assert out.shape == (2, *hw) and out.dtype == np.uint8
    assert out.max() < 4
    assert not model.training  # predict_batch must run BatchNorm in eval mode


def test_predict_batch_matches_argmax_when_no_padding_needed():
    torch.manual_seed(0)
    model = build_model("unet", 3, 4, base_channels=8).eval()
    batch = np.random.default_rng(1).random((2, 3, 32, 16), dtype=np.float32)
    with torch.no_grad():
        expected = model(torch.from_numpy(batch)).argmax(1).numpy()
    np.testing.assert_array_equal(predict_batch(model, batch, "cpu"), expected)


def test_predict_batch_valid_mask():
    torch.manual_seed(0)
    model = build_model("fcn", 3, 4, hidden_channels=8)
    batch = np.random.default_rng(2).random((2, 3, 9, 11), dtype=np.float32)
    valid = np.random.default_rng(3).random((2, 9, 11)) > 0.3
    plain = predict_batch(model, batch, "cpu")
    masked = predict_batch(model, batch, "cpu", valid=valid)
    assert (masked[~valid] == IGNORE).all()
    np.testing.assert_array_equal(masked[valid], plain[valid])
    with pytest.raises(ValueError, match="valid mask shape"):
        predict_batch(model, batch, "cpu", valid=valid[:, :5])
