import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
import torch
from ml_models import trained_like

from geo_assets.ml.export import export_model, load_model
from geo_assets.ml.predict import predict_batch


@pytest.mark.parametrize("arch", ["unet", "fcn"])
def test_export_load_roundtrip_identical(arch, tmp_path):
    model = trained_like(arch)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)  # no deprecated TorchScript path
        path = export_model(model, tmp_path / "model.pt2", in_channels=3)
    assert model.training  # export works on a copy; caller's model is untouched
    loaded = load_model(path, "cpu")
    batch = np.random.default_rng(0).random((2, 3, 37, 50), dtype=np.float32)
    np.testing.assert_array_equal(predict_batch(loaded, batch, "cpu"), predict_batch(model, batch, "cpu"))
    x = torch.from_numpy(np.random.default_rng(1).random((3, 3, 64, 40), dtype=np.float32))
    with torch.inference_mode():
        torch.testing.assert_close(loaded(x), model.eval()(x), rtol=1e-5, atol=1e-5)


def test_loaded_model_checks_channels(tmp_path):
    loaded = load_model(export_model(trained_like("fcn"), tmp_path / "m.pt2", 3), "cpu")
    with pytest.raises(ValueError, match="expects 3"):
        predict_batch(loaded, np.zeros((1, 5, 8, 8), np.float32), "cpu")


def test_export_loads_without_project_code(tmp_path):
    path = export_model(trained_like("unet"), tmp_path / "m.pt2", 3)
    script = textwrap.dedent(
        f"""
        import sys, torch
        m = torch.export.load({str(path)!r}).module()
        assert m(torch.zeros(1, 3, 24, 40)).shape == (1, 4, 24, 40)
        assert not [n for n in sys.modules if n.startswith("geo_assets")]
        print("ok")
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_load_missing_file_names_path(tmp_path):
    path = tmp_path / "nope.pt2"
    with pytest.raises(FileNotFoundError, match="nope.pt2"):
        load_model(path, "cpu")


def test_load_corrupt_file_names_path(tmp_path):
    garbage = tmp_path / "garbage.pt2"
    garbage.write_bytes(b"not a model")
    with pytest.raises(ValueError, match="garbage.pt2"):
        load_model(garbage, "cpu")
    good = export_model(trained_like("fcn"), tmp_path / "good.pt2", 3).read_bytes()
    truncated = tmp_path / "truncated.pt2"
    truncated.write_bytes(good[: len(good) // 2])
    with pytest.raises(ValueError, match="truncated.pt2"):
        load_model(truncated, "cpu")


def test_ml_package_never_imports_dagster():
    script = (
        "import sys, geo_assets.ml.models, geo_assets.ml.device, geo_assets.ml.data, "
        "geo_assets.ml.train, geo_assets.ml.export, geo_assets.ml.predict, geo_assets.ml.metrics; "
        "assert 'dagster' not in sys.modules, 'dagster imported'"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr


def test_concurrent_loads_succeed(tmp_path):
    # torch.export.load alone fails when two threads deserialise at once; load_model serialises them.
    from concurrent.futures import ThreadPoolExecutor

    path = export_model(trained_like("unet"), tmp_path / "m.pt2", 3)
    with ThreadPoolExecutor(4) as pool:
        loaded = list(pool.map(lambda _: load_model(path, "cpu"), range(8)))
    batch = np.random.default_rng(0).random((1, 3, 32, 32), dtype=np.float32)
    first = predict_batch(loaded[0], batch, "cpu")
    assert all(np.array_equal(predict_batch(m, batch, "cpu"), first) for m in loaded)
