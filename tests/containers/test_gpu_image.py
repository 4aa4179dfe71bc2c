"""The GPU image (deploy/Dockerfile.gpu), as far as it builds here: no CUDA base image can be pulled.

Built and run here: its first stage (`--target pybase`: Python 3.11 in a venv and the GPU lock) with
the bootstrapped Debian bookworm as CUDA_IMAGE (Debian names its python3.11 packages as Ubuntu 22.04
does); in that stage, pip resolves the build stage's own install (`torch==2.13.0` with the GPU lock)
against the package index from metadata only, so the CUDA torch, its nvidia-* wheels and every
locked version are shown to agree, and their CUDA major to match the default CUDA_IMAGE's.

Not run here: the download and install of the CUDA torch (several GB) and of the project on top, the
runtime stage on NVIDIA's CUDA image, and anything on a GPU.
"""

from __future__ import annotations

import json
import re
import subprocess

from image_helpers import ROOT, name
from packaging.utils import canonicalize_name

from devtools import containers

DOCKERFILE = ROOT / "deploy/Dockerfile.gpu"


def test_gpu_image_builds_to_its_python_stage_and_its_cuda_torch_resolves_against_the_lock(engine):
    base = containers.debian_image()
    tag = name("gpu").replace("-gpu-", ":gpu-", 1)
    try:
        containers.build(tag, DOCKERFILE, ROOT, args={"CUDA_IMAGE": base}, target="pybase")
        mount = (
            []
            if not containers.CA_BUNDLE.exists()
            else ["-v", f"{containers.CA_BUNDLE}:/ca.crt:ro", "-e", "PIP_CERT=/ca.crt"]
        )
        resolve = (
            "python --version && pip install --dry-run --ignore-installed --quiet --report /tmp/report.json "
            "-c /tmp/constraints-gpu.txt torch==2.13.0 && cat /tmp/report.json"
        )
        out = containers.docker(
            "run",
            "--rm",
            "--network",
            "host",
            *mount,
            tag,
            "sh",
            "-c",
            resolve,
            what="resolving the CUDA torch in the GPU image's Python stage",
            timeout=900,
        ).stdout
    finally:
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True, timeout=300)

    version, report = out.split("\n", 1)
    assert version.startswith("Python 3.11."), version
    resolved = {
        canonicalize_name(i["metadata"]["name"]): i["metadata"]["version"] for i in json.loads(report)["install"]
    }
    assert resolved["torch"] == "2.13.0"  # the public version: the index's CUDA build, not +cpu
    cuda = {n: v for n, v in resolved.items() if n.startswith("nvidia-")}
    assert len(cuda) >= 5, resolved  # the CUDA libraries come as wheels (cuBLAS, cuDNN, NCCL, ...)
    # The CUDA major of the wheels' runtime is the default base image's.
    runtime_major = resolved["nvidia-cuda-runtime"].split(".")[0]
    (default,) = re.findall(r"^ARG CUDA_IMAGE=nvidia/cuda:(\d+)\.", DOCKERFILE.read_text(), flags=re.M)
    assert runtime_major == default, f"torch's CUDA {resolved['nvidia-cuda-runtime']} vs the base's CUDA {default}"
    # Every resolved package that the lock pins is at the lock's version.
    lines = (ROOT / "deploy/constraints.txt").read_text().splitlines()
    pins = {
        canonicalize_name(n): v for n, v in (ln.split("==", 1) for ln in lines if "==" in ln and not ln.startswith("#"))
    }
    pins.pop("torch")  # the CPU build's line, which the GPU lock drops
    off = {n: (v, pins[n]) for n, v in resolved.items() if n in pins and pins[n] != v}
    assert off == {}, off
