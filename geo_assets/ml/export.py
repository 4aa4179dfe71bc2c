"""Export trained models to self-contained files, and load them back.

TorchScript (torch.jit.trace/script/save/load) is deprecated in torch 2.13 and emits
DeprecationWarnings, so models are exported with torch.export (.pt2 archive) instead: the
archive loads with torch alone, without this package. The same model is also exported to ONNX
(`export_onnx`), which ONNX Runtime runs alone, about twice as fast on the CPU (see
geo_assets.ml.runtime).
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import threading
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from torch.export import Dim
from torch.export.passes import move_to_device_pass

from geo_assets.ml import registry
from geo_assets.ml.device import select_device
from geo_assets.ml.models import required_multiple

__all__ = ["EXPORTS", "INPUT_NAME", "OUTPUT_NAME", "PAD_MULTIPLE", "export_model", "export_onnx", "load_model"]

# Tiles are padded to a multiple of this before inference (>= every zoo model's stride).
PAD_MULTIPLE = 8
_META_FILE = "geo_assets_meta.json"
_LOAD_LOCK = threading.Lock()
# ONNX names of the exported graph's input and output.
INPUT_NAME, OUTPUT_NAME = "image", "logits"


def _export_program(model: nn.Module, in_channels: int) -> tuple[torch.export.ExportedProgram, dict]:
    # Export a copy so the caller's model keeps its device and train/eval mode.
    model = copy.deepcopy(model).cpu().eval()
    multiple = math.lcm(PAD_MULTIPLE, required_multiple(model))
    # Dynamic batch and spatial dims, constrained to the stride multiple, so one file
    # serves every tile size. Example dims avoid 0/1, which export would specialise on.
    example = torch.zeros(2, in_channels, 4 * multiple, 4 * multiple)
    dynamic = {0: Dim("batch", min=1), 2: multiple * Dim("h_blocks", min=1), 3: multiple * Dim("w_blocks", min=1)}
    with torch.no_grad():
        program = torch.export.export(model, (example,), dynamic_shapes=(dynamic,))
    return program, {"in_channels": in_channels, "pad_multiple": multiple}


def export_model(model: nn.Module, path: str | os.PathLike[str], in_channels: int) -> Path:
    """Save `model` (eval mode, CPU) as a torch.export archive loadable without this package."""
    path = Path(path)
    program, meta = _export_program(model, in_channels)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.export.save(program, path, extra_files={_META_FILE: json.dumps(meta)})
    return path


def export_onnx(model: nn.Module, path: str | os.PathLike[str], in_channels: int) -> Path:
    """Save `model` as one ONNX file (weights inside) with the same dynamic batch and tile size.

    It runs with onnxruntime alone: input `image` (N, C, H, W) float32 normalised reflectance,
    H and W multiples of the `pad_multiple` in the file's metadata; output `logits` (N, classes, H, W).
    """
    path = Path(path)
    program, meta = _export_program(model, in_channels)
    # The exporter warns about torchvision ops it cannot register and its own use of a deprecated
    # pytree API; neither concerns these models, so keep training logs free of them.
    registration = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registration.level
    registration.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*LeafSpec.*", category=FutureWarning)
            onnx_program = torch.onnx.export(
                program, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], dynamo=True, verbose=False
            )
    finally:
        registration.setLevel(level)
    assert onnx_program is not None  # dynamo=True always gives a program
    onnx_program.model.metadata_props.update({k: str(v) for k, v in meta.items()})
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx_program.save(path, external_data=False)
    return path


# What a model version stores, file name -> exporter (torch.export archive, ONNX): written once, at training.
EXPORTS: dict[str, Callable[[nn.Module, str | os.PathLike[str], int], Path]] = {
    registry.WEIGHTS_FILE: export_model,
    registry.ONNX_FILE: export_onnx,
}


def load_model(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> nn.Module:
    """Load an exported model onto `device`; the result is callable like the original model."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {path}")
    extra: dict[str, str] = {_META_FILE: ""}
    try:
        with _LOAD_LOCK:  # torch.export.load is not thread-safe ("_CURRENT_DESERIALIZER is already set")
            program = torch.export.load(path, extra_files=extra)
    except Exception as exc:  # zip/deserialisation errors vary by corruption type
        raise ValueError(f"could not load model from {path}: not a valid exported model ({exc})") from exc
    device = select_device(device) if isinstance(device, str) else device
    if device.type != "cpu":
        program = move_to_device_pass(program, device)
    module = program.module()
    # Carry the export metadata on the module so predict_batch pads correctly.
    meta = json.loads(extra[_META_FILE] or "{}")
    module.pad_multiple = int(meta.get("pad_multiple", PAD_MULTIPLE))  # type: ignore[assignment]  # torch types module attributes as tensors: this is metadata
    module.in_channels = meta.get("in_channels")
    return module
