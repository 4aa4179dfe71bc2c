"""Shared by the benchmarks: machine facts and BENCHMARKS.md sections."""

from __future__ import annotations

import datetime
import json
import os
import platform as py_platform
import resource
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# The 1-minute load when the benchmark's process began (this module is imported before any work):
# machine_info() may be called after the runs, whose own load must not pass for the machine's.
LOAD_AT_START = round(os.getloadavg()[0], 2)
# Above this 1-minute load at the start, a benchmark's figures are printed and kept in bench/results/,
# not published in BENCHMARKS.md: a busy machine's timings say little about the code.
QUIET_LOAD = 0.5
DOC = REPO / "BENCHMARKS.md"
INTRO = "# Benchmarks\n\nRun them with `make bench`. Each benchmark rewrites its own section below.\n"

# Code that several benchmarks measure; each benchmark's MEASURES (its own module first) builds on these.
# bench.stale lists a section when any of its paths changed since the commit it measured.
INFERENCE = [
    "geo_assets/ml/inference.py",
    "geo_assets/ml/runtime.py",
    "geo_assets/ml/layout.py",
    "geo_assets/ml/inputs.py",
    "geo_assets/ml/export.py",
    "geo_assets/ml/predict.py",
    "geo_assets/ml/normalisation.py",
    "geo_assets/ml/models.py",
    "geo_assets/ml/device.py",
    "geo_assets/ml/options.py",
    "geo_assets/ml/chunks.py",
]
TILE_IO = [
    "geo_assets/geo/cog.py",
    "geo_assets/geo/store.py",
    "geo_assets/engine/threads.py",
    "geo_assets/engine/batches.py",
    "geo_assets/engine/ledger.py",
    "geo_assets/engine/jobs.py",
    "geo_assets/geo/margins.py",
    "geo_assets/geo/mosaic.py",
]
# Runs, launches and backfills load the whole code location in each process: all of it is measured.
CODE_LOCATION = ["geo_assets", "resources", "dagster.yaml", "devtools/dagster_dev.py"]


def reset_peak() -> bool:
    """Restart this process's VmHWM (Linux clear_refs 5): peaks measured after it leave out earlier work."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_mb(reset_ok: bool) -> float:
    """This process's peak RSS since reset_peak(), or since it started where that could not be reset."""
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
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "loadavg_1min_at_start": LOAD_AT_START,
    }


def measured_commit(measures: list[str]) -> str:
    """The commit whose code a run measures: HEAD, or "unknown (...)" when the measured paths differ from it."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(REPO), *args], capture_output=True, text=True, check=True
        ).stdout.strip()

    try:
        head = git("rev-parse", "--short=12", "HEAD")
        dirty = git("status", "--porcelain", "--", *measures)
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    # Figures of uncommitted code belong to no commit: bench.stale lists them until rerun on a commit.
    return f"unknown (uncommitted changes to measured code on {head})" if dirty else head


def meta_line(name: str, commit: str, measures: list[str]) -> str:
    """The machine-readable line bench.stale reads: which commit a section measured, and which code."""
    return f"<!-- bench: {name}; commit: {commit}; measures: {' '.join(measures)} -->"


def publish(name: str, measures: list[str], results: Path, record: dict, section: str, quiet: bool = True) -> None:
    """A run's raw figures to `results` (bench/results/), its section to BENCHMARKS.md, and printed."""
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(json.dumps(record, indent=2))
    write_section(name, measures, section, quiet)
    print(section)


def anchor(name: str) -> str:
    return f'<a id="{name}"></a>'


def write_section(name: str, measures: list[str], section: str, quiet: bool = True) -> None:
    """Replace the text between `<!-- name:start -->` and `<!-- name:end -->` in BENCHMARKS.md.

    `measures` lists the paths (files or folders, from the repository root) whose code the figures
    measure, the benchmark's own module included; the section records them with the commit measured.
    `quiet`: timings, published only when the machine was quiet at the start (QUIET_LOAD); sizes, which
    load does not change, pass False.
    """
    if quiet and LOAD_AT_START > QUIET_LOAD:
        print(
            f"{name}: not written to BENCHMARKS.md: the 1-minute load average was {LOAD_AT_START} when the "
            f"benchmark began, over {QUIET_LOAD}. Rerun it on a quiet machine.",
            file=sys.stderr,
        )
        return
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    text = DOC.read_text() if DOC.exists() else INTRO
    # The anchor that quotes link to (BENCHMARKS.md#NAME), on a clone and in the docs site alike.
    block = f"{start}\n{anchor(name)}\n{meta_line(name, measured_commit(measures), measures)}\n{section}\n{end}"
    if start in text and end in text:
        before, rest = text.split(start, 1)
        text = before + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    DOC.write_text(text)
