"""Turn a config string into a torch.device, failing early instead of mid-run; count the CPU cores."""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

ACCEPTED = "auto, cpu, cuda, cuda:N"


def select_device(name: str) -> torch.device:
    """'auto' -> cuda if available else cpu; 'cpu'; 'cuda' / 'cuda:N' (only if that GPU exists)."""
    import torch  # here, not at the top: `cores` is read by processes that never load a model

    value = name.strip().lower() if isinstance(name, str) else name
    if value == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if value == "cpu":
        return torch.device("cpu")
    match = re.fullmatch(r"cuda(?::(\d+))?", value) if isinstance(value, str) else None
    if match is None:
        raise ValueError(f"unknown device {name!r}; accepted: {ACCEPTED}")
    # Checked here so a GPU-less worker fails at config time, not inside the first forward pass.
    if not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available on this machine; use 'auto' or 'cpu'")
    index = int(match.group(1)) if match.group(1) is not None else None
    if index is not None and index >= torch.cuda.device_count():
        raise ValueError(f"device {name!r} requested but only {torch.cuda.device_count()} CUDA device(s) exist")
    return torch.device(value)


def cores() -> int:
    """The CPU cores this process may run on (its affinity where the OS has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
