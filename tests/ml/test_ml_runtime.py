"""Runtimes (torch eager, ONNX Runtime), how one is chosen, the ONNX export, and measured layouts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from ml_models import trained_like

from geo_assets.ml import layout as layouts
from geo_assets.ml.export import export_onnx
from geo_assets.ml.layout import Layout, choose_layout, thread_splits
from geo_assets.ml.options import ENV_VAR
from geo_assets.ml.predict import predict_batch
from geo_assets.ml.runtime import OnnxRuntime, TorchRuntime, load_runtime

CPU = torch.device("cpu")


def _copy_version(tiny, prefix: str, files: list[str]) -> str:
    for name in files:
        tiny.store.write_bytes(f"{prefix}/{name}", tiny.store.read_bytes(f"{tiny.weights.rsplit('/', 1)[0]}/{name}"))
    return f"{prefix}/model.pt2"


def test_auto_picks_onnxruntime_on_cpu(tiny, monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    runtime = load_runtime(tiny.store, tiny.weights, CPU)
    assert isinstance(runtime, OnnxRuntime) and runtime.note == ""
    assert runtime.describe() == {"runtime": "onnxruntime", "device": "cpu"}
    assert runtime.in_channels == 4 and runtime.multiple == 8  # from the ONNX file's metadata


def test_auto_falls_back_to_torch_for_a_version_without_onnx(tiny, monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    weights = _copy_version(tiny, "models/tiny-unet/old", ["model.pt2"])  # trained before ONNX export
    runtime = load_runtime(tiny.store, weights, CPU)
    assert isinstance(runtime, TorchRuntime)
    assert "has no model.onnx" in runtime.note
    with pytest.raises(ValueError, match="runtime onnxruntime asked for, but the version has no model.onnx"):
        load_runtime(tiny.store, weights, CPU, "onnxruntime")


def test_runtime_from_config_or_environment(tiny, monkeypatch):
    monkeypatch.setenv(ENV_VAR, "torch")
    assert isinstance(load_runtime(tiny.store, tiny.weights, CPU), TorchRuntime)
    assert isinstance(load_runtime(tiny.store, tiny.weights, CPU, "onnxruntime"), OnnxRuntime)  # config wins
    monkeypatch.setenv(ENV_VAR, "tensorrt")
    with pytest.raises(ValueError, match=f"^unknown {ENV_VAR}='tensorrt'; accepted: auto, torch, onnxruntime$"):
        load_runtime(tiny.store, tiny.weights, CPU)
    with pytest.raises(ValueError, match="unknown inference runtime 'onnx' \\(from config\\)"):
        load_runtime(tiny.store, tiny.weights, CPU, "onnx")


def test_onnxruntime_is_refused_on_cuda(tiny):
    # Checked before anything is loaded, so no GPU is needed to see the message.
    with pytest.raises(ValueError, match="runs on the CPU only"):
        load_runtime(tiny.store, tiny.weights, torch.device("cuda"), "onnxruntime")


def test_corrupt_onnx_file_is_named(tiny):
    weights = _copy_version(tiny, "models/tiny-unet/broken", ["model.pt2"])
    good = tiny.store.read_bytes(f"{tiny.weights.rsplit('/', 1)[0]}/model.onnx")
    tiny.store.write_bytes("models/tiny-unet/broken/model.onnx", good[: len(good) // 2])
    with pytest.raises(ValueError, match=r"could not load model from .*broken/model\.onnx: not a valid ONNX model"):
        load_runtime(tiny.store, weights, CPU, "onnxruntime")


@pytest.mark.parametrize("arch", ["unet", "fcn"])
def test_onnx_export_predicts_like_eager(arch, tmp_path):
    model = trained_like(arch)
    path = export_onnx(model, tmp_path / "model.onnx", in_channels=3)
    assert model.training  # export works on a copy
    runtime = OnnxRuntime(path.read_bytes(), str(path))
    for shape in [(2, 3, 37, 50), (1, 3, 64, 64), (3, 3, 5, 9)]:  # any batch and tile size
        batch = np.random.default_rng(0).random(shape, dtype=np.float32)
        ours, eager = runtime.predict(batch), predict_batch(model, batch, "cpu")
        assert np.mean(ours == eager) >= 0.999
    with pytest.raises(ValueError, match="expects 3"):
        runtime.predict(np.zeros((1, 5, 8, 8), np.float32))


def test_onnx_bundle_runs_with_onnxruntime_alone(tiny):
    path = tiny.store.path(f"{tiny.weights.rsplit('/', 1)[0]}/model.onnx")
    script = textwrap.dedent(
        f"""
        import sys, numpy as np, onnxruntime as ort
        s = ort.InferenceSession({path!r}, providers=["CPUExecutionProvider"])
        meta = s.get_modelmeta().custom_metadata_map
        m = int(meta["pad_multiple"])
        (logits,) = s.run(["logits"], {{"image": np.zeros((2, int(meta["in_channels"]), 3 * m, 5 * m), np.float32)}})
        assert logits.shape == (2, 5, 3 * m, 5 * m), logits.shape
        assert not [n for n in sys.modules if n.startswith(("geo_assets", "torch"))]
        print("ok")
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


# --------------------------------------------------------------------------------------------------
# Layouts: measured once per machine and model, then cached.


def _sample() -> np.ndarray:
    return np.random.default_rng(0).random((4, 64, 64), dtype=np.float32)


def test_layout_is_measured_then_cached(tiny, monkeypatch):
    runtime = load_runtime(tiny.store, tiny.weights, CPU, "onnxruntime")
    calls = []
    measure = layouts.measure
    monkeypatch.setattr(layouts, "measure", lambda *a: calls.append(a[2:]) or measure(*a))
    first = choose_layout(runtime, _sample())
    assert first.how == "measured" and first.tiles_per_s > 0
    assert (first.streams, first.threads) in thread_splits(layouts.cores())
    assert first.batch_size in layouts.CPU_BATCHES and first.io_threads == 2 * first.streams
    assert calls[: len(thread_splits(layouts.cores()))] == [(s, t, 1) for s, t in thread_splits(layouts.cores())]
    # The same model, tile shape and machine: from memory, then from the file in a new process.
    assert choose_layout(runtime, _sample()) == Layout(**{**first.__dict__, "how": "cached"})
    monkeypatch.setattr(layouts, "_memory", {})
    n = len(calls)
    assert choose_layout(runtime, _sample()).batch_size == first.batch_size and len(calls) == n
    stored = json.loads(layouts.cache_path().read_text())
    assert [v["batch_size"] for v in stored.values()] == [first.batch_size]
    # Another tile shape or model is another measurement.
    assert choose_layout(runtime, _sample()[:, :32]).how == "measured"
    other = load_runtime(tiny.store, tiny.weights, CPU, "torch")
    assert choose_layout(other, _sample()).how == "measured"
    assert len(json.loads(layouts.cache_path().read_text())) == 3


def test_given_batch_size_only_measures_threads(tiny, monkeypatch):
    runtime = load_runtime(tiny.store, tiny.weights, CPU, "onnxruntime")
    calls = []
    measure = layouts.measure
    monkeypatch.setattr(layouts, "measure", lambda *a: calls.append(a[2:]) or measure(*a))
    chosen = choose_layout(runtime, _sample(), 6)
    assert chosen.batch_size == 6 and {c[2] for c in calls} == {6}


def test_damaged_cache_is_measured_again(tiny):
    path = layouts.cache_path()
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    runtime = load_runtime(tiny.store, tiny.weights, CPU, "onnxruntime")
    assert choose_layout(runtime, _sample()).how == "measured"
    assert len(json.loads(path.read_text())) == 1


def test_unwritable_cache_keeps_the_layout_in_memory(tiny, monkeypatch, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv(layouts.CACHE_ENV, str(blocker / "sub"))  # a directory that cannot be made
    runtime = load_runtime(tiny.store, tiny.weights, CPU, "onnxruntime")
    assert choose_layout(runtime, _sample()).how == "measured"
    assert choose_layout(runtime, _sample()).how == "cached"
    assert not os.path.exists(blocker / "sub")


def test_torch_session_restores_thread_count(tiny):
    runtime = load_runtime(tiny.store, tiny.weights, CPU, "torch")
    before = torch.get_num_threads()
    with runtime.session(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def test_a_worker_measures_on_its_share_of_the_cores(tiny):
    runtime = load_runtime(tiny.store, tiny.weights, CPU, "onnxruntime")
    one = choose_layout(runtime, _sample(), cpus=1)
    assert (one.streams, one.threads) == (1, 1) and one.io_threads == 2
    with pytest.raises(ValueError, match="cpus must be an integer between 1 and 256, got 0"):
        choose_layout(runtime, _sample(), cpus=0)


def test_a_crowded_machine_gets_one_stream_per_core_by_cpu_time_and_no_cache(tiny, monkeypatch):
    monkeypatch.setattr(layouts, "BUSY", 2.0)  # as if other processes always took the cores
    runtime = load_runtime(tiny.store, tiny.weights, CPU, "onnxruntime")
    calls = []
    measure = layouts.measure
    monkeypatch.setattr(layouts, "measure", lambda *a: calls.append(a[2:]) or measure(*a))
    chosen = choose_layout(runtime, _sample())
    n = layouts.cores()
    assert chosen.how == "busy machine: by CPU time"
    assert (chosen.streams, chosen.threads, chosen.io_threads) == (n, 1, 2 * n)
    assert {c[:2] for c in calls} == {(n, 1)}  # no other split was timed
    assert chosen.batch_size in layouts.CPU_BATCHES
    assert not layouts.cache_path().exists()
    n_calls = len(calls)
    assert choose_layout(runtime, _sample()) == chosen and len(calls) == n_calls  # kept for this process
    monkeypatch.setattr(layouts, "_memory", {})  # another process
    assert choose_layout(runtime, _sample()).how == "busy machine: by CPU time" and len(calls) > n_calls
    assert not layouts.cache_path().exists()
