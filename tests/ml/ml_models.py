"""Small models for the ml tests (tests/ml is on sys.path: pytest's default import mode)."""

from __future__ import annotations

import torch

from geo_assets.ml.models import build_model


def trained_like(arch: str) -> torch.nn.Module:
    """A 3-band, 4-class model with non-trivial BatchNorm statistics, so a train/eval mix-up would change the outputs."""
    torch.manual_seed(0)
    model = build_model(arch, 3, 4, **({"base_channels": 8} if arch == "unet" else {}))
    with torch.no_grad():
        model.train()(torch.rand(4, 3, 32, 32) * 3 + 1)
    return model
