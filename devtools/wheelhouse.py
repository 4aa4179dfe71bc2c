"""Fill deploy/wheelhouse/ with every wheel the image installs, so that it builds with no index at all:

    python -m devtools.wheelhouse             # on a machine that reaches the index (or the torch wheel folder)
    docker build --network host -f deploy/Dockerfile -t geo-assets:cpu \\
        --build-arg PYTHON_IMAGE=... --build-arg PIP_NO_INDEX=1 .

The image's installs (deploy/install-locked.sh) are torch's CPU build, then pyproject's runtime
dependencies and setuptools, all at the lock's versions (deploy/constraints.txt); the project's own wheel
is built with that setuptools. So the wheelhouse holds exactly their wheels: the CPU torch wheel from the
local wheel folder (devtools.containers.fill_wheelhouse, hard-linked) or PyTorch's CPU wheel index, and
the rest as `pip wheel` resolves them against the lock, on this machine (Debian bookworm's Python 3.11,
the image's). The dev extra is left out: the image never installs it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

from devtools import containers

ROOT = Path(__file__).resolve().parents[1]
TORCH = "torch==2.13.0+cpu"  # the lock's torch, as install-locked.sh asks for it


def runtime_requirements(root: Path = ROOT) -> list[str]:
    """What install-locked.sh installs after torch: pyproject's [project].dependencies, and setuptools."""
    return [*tomllib.loads((root / "pyproject.toml").read_text())["project"]["dependencies"], "setuptools"]


def torch_index(root: Path = ROOT) -> str:
    """PyTorch's CPU wheel index: TORCH_INDEX_URL, else install-locked.sh's default (the one place naming it)."""
    script = (root / "deploy/install-locked.sh").read_text()
    return os.environ.get("TORCH_INDEX_URL") or re.search(r"TORCH_INDEX_URL=\$\{TORCH_INDEX_URL:-(\S+)\}", script)[1]


def fill(wheelhouse: Path = ROOT / "deploy/wheelhouse", root: Path = ROOT) -> list[str]:
    """Every wheel of the image's installs in `wheelhouse`; returns their file names. A package that no
    source holds at the lock's version fails here, with pip's message naming it."""
    containers.fill_wheelhouse(wheelhouse)  # the local torch wheel (hard link) and the CA bundle
    cmd = [sys.executable, "-m", "pip", "wheel", "--wheel-dir", str(wheelhouse), "--find-links", str(wheelhouse)]
    cmd += ["-c", str(root / "deploy/constraints.txt"), TORCH, *runtime_requirements(root)]
    if not any(wheelhouse.glob("torch-2.13.0+cpu-*.whl")):
        cmd += ["--extra-index-url", torch_index(root)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        errors = [line for line in proc.stderr.splitlines() if line.startswith("ERROR")] or proc.stderr.splitlines()[
            -5:
        ]
        raise SystemExit(f"devtools.wheelhouse: could not fill {wheelhouse}:\n" + "\n".join(errors))
    return sorted(p.name for p in wheelhouse.glob("*.whl"))


if __name__ == "__main__":
    target = Path(sys.argv[1]).resolve() if sys.argv[1:] else ROOT / "deploy/wheelhouse"
    names = fill(target)
    print(f"{len(names)} wheels in {target}")
