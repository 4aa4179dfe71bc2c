"""A small zoo of per-pixel segmentation networks, looked up by name."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from geo_assets.ml.options import HYPERPARAMETERS, MAX_PARAMETERS


def _double_conv(in_ch: int, out_ch: int) -> nn.Sequential:
    # bias=False: BatchNorm's shift makes a conv bias redundant.
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.ReLU(inplace=True),
        nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.ReLU(inplace=True),
    )


class UNet(nn.Module):
    """Compact U-Net; input H and W must be divisible by 2**depth."""

    def __init__(self, in_channels: int, num_classes: int, base_channels: int = 16, depth: int = 3) -> None:
        super().__init__()
        if depth < 1 or base_channels < 1:
            raise ValueError(f"depth and base_channels must be >= 1, got depth={depth}, base_channels={base_channels}")
        self.depth = depth
        widths = [base_channels * 2**i for i in range(depth + 1)]
        self.stem = _double_conv(in_channels, widths[0])
        self.down = nn.ModuleList(_double_conv(widths[i], widths[i + 1]) for i in range(depth))
        self.pool = nn.MaxPool2d(2)
        # Transposed convs (not interpolate) keep the graph free of size-dependent
        # Python arithmetic, which makes tracing/export shape-generic.
        self.up = nn.ModuleList(
            nn.ConvTranspose2d(widths[i + 1], widths[i], 2, stride=2) for i in reversed(range(depth))
        )
        self.merge = nn.ModuleList(_double_conv(widths[i] * 2, widths[i]) for i in reversed(range(depth)))
        self.head = nn.Conv2d(widths[0], num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = [self.stem(x)]
        for block in self.down:
            skips.append(block(self.pool(skips[-1])))
        y = skips.pop()
        for up, merge in zip(self.up, self.merge):
            y = merge(torch.cat([up(y), skips.pop()], dim=1))
        return self.head(y)


class PixelFCN(nn.Module):
    """Tiny fully-convolutional net without downsampling: a strong per-pixel baseline."""

    def __init__(self, in_channels: int, num_classes: int, hidden_channels: int = 32, num_layers: int = 2) -> None:
        super().__init__()
        if num_layers < 1 or hidden_channels < 1:
            raise ValueError(f"num_layers and hidden_channels must be >= 1, got {num_layers}, {hidden_channels}")
        layers: list[nn.Module] = []
        ch = in_channels
        for _ in range(num_layers):
            layers += [
                nn.Conv2d(ch, hidden_channels, 3, padding=1, bias=False),
                nn.BatchNorm2d(hidden_channels),
                nn.ReLU(inplace=True),
            ]
            ch = hidden_channels
        # 1x1 mixing layer then classifier: cheap extra per-pixel capacity.
        layers += [nn.Conv2d(ch, hidden_channels, 1), nn.ReLU(inplace=True), nn.Conv2d(hidden_channels, num_classes, 1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {"unet": UNet, "fcn": PixelFCN}


def check_hyperparameters(
    architecture: str, hyperparameters: dict[str, Any], in_channels: int = 6, num_classes: int = 6
) -> dict:
    """The hyperparameters as ints, each within its range, and a model within MAX_PARAMETERS; else one
    ValueError naming the first problem. Counts weights on torch's meta device: nothing is allocated."""
    if architecture not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {architecture!r}; accepted: {', '.join(sorted(ARCHITECTURES))}")
    bounds = HYPERPARAMETERS[architecture]
    unknown = sorted(set(hyperparameters) - set(bounds))
    if unknown:
        raise ValueError(
            f"unknown hyperparameter(s) {', '.join(unknown)} for architecture {architecture!r}; "
            f"accepted: {', '.join(bounds)}"
        )
    checked = {}
    for name, value in hyperparameters.items():
        low, high = bounds[name]
        whole = (
            isinstance(value, (int, float))
            and not isinstance(value, bool)
            and math.isfinite(value)
            and float(value).is_integer()
        )
        if not whole or not low <= value <= high:
            raise ValueError(
                f"hyperparameter {name} of {architecture!r} must be a whole number from {low} to {high}, got {value!r}"
            )
        checked[name] = int(value)
    with torch.device("meta"):
        count = sum(p.numel() for p in ARCHITECTURES[architecture](in_channels, num_classes, **checked).parameters())
    if count > MAX_PARAMETERS:
        raise ValueError(
            f"{architecture} with {checked} has {count:,} parameters; the limit is {MAX_PARAMETERS:,}: "
            "use fewer channels or levels"
        )
    return checked


def required_multiple(model: nn.Module) -> int:
    """Input H and W must be a multiple of this; inference pads to it (depth is a hyperparameter)."""
    return 2**model.depth if isinstance(model, UNet) else 1


def build_model(architecture: str, in_channels: int, num_classes: int, **hyperparameters: Any) -> nn.Module:
    """Instantiate a zoo model; unknown names and out-of-range sizes fail before any memory is taken."""
    if in_channels < 1 or num_classes < 2:
        raise ValueError(f"need in_channels >= 1 and num_classes >= 2, got {in_channels}, {num_classes}")
    checked = check_hyperparameters(architecture, hyperparameters, in_channels, num_classes)
    return ARCHITECTURES[architecture](in_channels, num_classes, **checked)
