"""Shared by the benchmarks: machine facts, peak memory of a phase, and BENCHMARKS.md sections."""

from __future__ import annotations

import datetime
import os
import platform as py_platform
import resource
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "BENCHMARKS.md"
INTRO = "# Benchmarks\n\nRun them with `make bench`. Each benchmark rewrites its own section below.\n"


# Peak RSS of one phase: /proc/self/clear_refs "5" resets VmHWM (Linux >= 4.0); getrusage's
# ru_maxrss cannot be reset (and keeps the maximum of exited threads), so it is only the fallback.
def reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_mb(reset_ok: bool) -> float:
    if reset_ok:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux



def machine_info() -> dict:
    import dagster
    import rasterio
    import torch

    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "nproc": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "os_cpu_count": os.cpu_count(),
        "cpu_model": cpu,
        "platform": py_platform.platform(),
        "python": py_platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "dagster": dagster.__version__,
        "rasterio": rasterio.__version__,
        "gdal": rasterio.__gdal_version__,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "loadavg_1min_at_start": round(os.getloadavg()[0], 2),
    }




def write_section(name: str, section: str) -> None:
    """Replace the text between `<!-- name:start -->` and `<!-- name:end -->` in BENCHMARKS.md."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    text = DOC.read_text() if DOC.exists() else INTRO
    block = f"{start}\n{section}\n{end}"
    if start in text and end in text:
        before, rest = text.split(start, 1)
        text = before + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    DOC.write_text(text)
