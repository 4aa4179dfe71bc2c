"""Inference runtimes: torch eager and ONNX Runtime behind one small interface.

Measured on 2 CPU cores (BENCHMARKS.md, "floor"): ONNX Runtime runs the demo U-Net's forward
pass in about half the CPU time of torch eager (it fuses convolution, batch norm and ReLU);
OpenVINO takes 5-10% less CPU per tile than ONNX Runtime but is a package nearly three times the
size, with a telemetry dependency; torch.compile sits between eager and ONNX Runtime and needs a C++
compiler at run time. So ONNX Runtime is the one shipped. Its classes equal eager's on the
benchmark tiles (the benchmark reports the share of equal pixels).

The runtime is chosen per run: the `name` argument (the predictions config), else the
`GEO_ASSETS_INFERENCE_RUNTIME` variable, else `auto`: ONNX Runtime on the CPU when it is installed
and the model version has `model.onnx`, torch otherwise. On CUDA it is always torch (ONNX Runtime
is installed for the CPU only).
"""

from __future__ import annotations

import hashlib
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager

import numpy as np
import torch
from torch import nn

from geo_assets.geo.integrity import check_file
from geo_assets.geo.store import ObjectNotFoundError, Store
from geo_assets.ml import registry
from geo_assets.ml.export import INPUT_NAME, OUTPUT_NAME, PAD_MULTIPLE, load_model
from geo_assets.ml.models import required_multiple
from geo_assets.ml.options import requested
from geo_assets.ml.predict import argmax_classes, classify, torch_forward

Forward = Callable[[np.ndarray], np.ndarray]  # a padded (N,C,H,W) float32 batch -> (N,H,W) uint8 class ids


class Runtime(ABC):
    """A loaded model on one runtime: `session(threads)` yields a forward callable that several
    threads may call at once (one inference stream each)."""

    name: str
    device: torch.device
    multiple: int  # tiles are padded to a multiple of this
    in_channels: int | None
    digest: str  # the model's content hash: measured layouts are cached under it
    note: str = ""  # why this runtime was chosen, when it was not the one asked for
    source: str = ""  # the file it was loaded from (model.pt2 or model.onnx); empty for a module in memory

    @abstractmethod
    def session(self, threads: int | None) -> AbstractContextManager[Forward]:
        """A context yielding the forward pass with `threads` intra-op threads per call (None: the runtime's own)."""

    def predict(self, batch: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
        """(N,C,H,W) normalized float32 -> (N,H,W) uint8 class ids, as `predict.predict_batch`."""
        with self.session(None) as forward:
            return classify(forward, batch, self.multiple, valid, self.in_channels)

    def describe(self) -> dict:
        return {"runtime": self.name, "device": str(self.device), **({"note": self.note} if self.note else {})}


class TorchRuntime(Runtime):
    """torch eager: an exported module (model.pt2) or any in-memory nn.Module, on the CPU or CUDA."""

    name = "torch"

    def __init__(self, module: nn.Module, device: torch.device, digest: str | None = None) -> None:
        if not isinstance(module, torch.fx.GraphModule):
            module.eval().to(device)  # exported modules already run in inference mode and refuse .eval()
        self.module, self.device = module, device
        self.multiple = getattr(module, "pad_multiple", None) or math.lcm(PAD_MULTIPLE, required_multiple(module))
        self.in_channels = getattr(module, "in_channels", None)
        self.digest = digest or _state_digest(module)

    @contextmanager
    def session(self, threads: int | None) -> Iterator[Forward]:
        # torch's intra-op pool is per process: set it for the run and put it back after.
        before = torch.get_num_threads()
        if threads and self.device.type == "cpu":
            torch.set_num_threads(threads)
        try:
            yield torch_forward(self.module, self.device)
        finally:
            torch.set_num_threads(before)


class OnnxRuntime(Runtime):
    """ONNX Runtime on the CPU, from the bytes of a version's model.onnx."""

    name = "onnxruntime"

    def __init__(self, model: bytes, source: str) -> None:
        import onnxruntime as ort

        self._ort, self._model, self.source = ort, model, source
        self.device = torch.device("cpu")
        self.digest = hashlib.sha256(model).hexdigest()[:16]
        self._sessions: dict[int | None, object] = {}
        meta = self._session(1).get_modelmeta().custom_metadata_map  # also checks the file loads
        self.multiple = int(meta.get("pad_multiple", PAD_MULTIPLE))
        self.in_channels = int(meta["in_channels"]) if "in_channels" in meta else None

    def _session(self, threads: int | None):
        if threads not in self._sessions:
            options = self._ort.SessionOptions()
            options.log_severity_level = 3  # errors only
            options.inter_op_num_threads = 1
            if threads:
                options.intra_op_num_threads = threads
            # Idle pool threads must not spin: the other streams and the tile I/O need the cores.
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            try:
                self._sessions[threads] = self._ort.InferenceSession(
                    self._model, options, providers=["CPUExecutionProvider"]
                )
            except Exception as exc:  # protobuf and graph errors vary by corruption
                raise ValueError(f"could not load model from {self.source}: not a valid ONNX model ({exc})") from exc
        return self._sessions[threads]

    @contextmanager
    def session(self, threads: int | None) -> Iterator[Forward]:
        session = self._session(threads)
        yield lambda batch: argmax_classes(session.run([OUTPUT_NAME], {INPUT_NAME: batch})[0])


def _state_digest(module: nn.Module) -> str:
    h = hashlib.sha256(type(module).__name__.encode())
    for name, tensor in module.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def installed() -> list[str]:
    """The runtimes importable here, besides torch."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return ["torch"]
    return ["torch", "onnxruntime"]


def as_runtime(model: nn.Module | Runtime, device: str | torch.device = "cpu") -> Runtime:
    """A Runtime as is; a torch module (exported or in memory) wrapped as torch eager on `device`."""
    if isinstance(model, Runtime):
        return model
    from geo_assets.ml.device import select_device

    return TorchRuntime(model, select_device(device) if isinstance(device, str) else device)


def load_runtime(store: Store, weights: str, device: torch.device, name: str | None = None) -> Runtime:
    """Load a model version for inference from its weights key (`models/<name>/<version>/model.pt2`).

    `auto` picks ONNX Runtime on the CPU when it is installed and the version has model.onnx
    (written next to model.pt2 at training), else torch; the reason is in `runtime.note`.
    """
    name = requested(name)
    folder = weights.rsplit("/", 1)[0]
    onnx_key = f"{folder}/{registry.ONNX_FILE}"
    # The sizes and digests recorded at training: a file copied over from another version is refused
    # before it predicts anything. Versions trained before they were recorded load unchecked, and say so.
    try:
        recorded = store.read_json(f"{folder}/{registry.MODEL_FILE}").get("files")
    except ObjectNotFoundError:  # a bare exported model, outside the model store's layout
        recorded = None
    unverified = (
        "" if recorded else f"files not verified: no digests recorded in {store.uri(folder)}/{registry.MODEL_FILE}"
    )
    note = ""

    def checked(key: str, path: str) -> str:
        if recorded:
            file = key.rsplit("/", 1)[1]
            if file not in recorded:
                raise ValueError(
                    f"{store.uri(key)} has no digest in {store.uri(folder)}/{registry.MODEL_FILE}; refusing to use it"
                )
            check_file(store.uri(key), path, recorded[file])
        return path

    if name == "onnxruntime" and device.type != "cpu":
        raise ValueError(f"runtime onnxruntime runs on the CPU only, not {device}; use runtime torch or auto")
    if name in ("auto", "onnxruntime") and device.type == "cpu":
        if "onnxruntime" not in installed():
            note = "onnxruntime is not installed"
        elif not store.exists(onnx_key):
            note = f"the version has no {registry.ONNX_FILE} (trained before ONNX export)"
        else:
            with store.local_copy(onnx_key) as path:
                with open(checked(onnx_key, path), "rb") as f:
                    model = f.read()
            runtime: Runtime = OnnxRuntime(model, store.uri(onnx_key))
            runtime.note = unverified
            return runtime
        if name == "onnxruntime":
            raise ValueError(f"runtime onnxruntime asked for, but {note}; use runtime torch or auto")
    with store.local_copy(weights) as path:  # torch.export.load needs a local file
        module = load_model(checked(weights, path), device)
        with open(path, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()[:16]
    runtime = TorchRuntime(module, device, digest)
    runtime.source = store.uri(weights)
    runtime.note = "; ".join(n for n in (f"torch eager: {note}" if note else "", unverified) if n)
    return runtime
