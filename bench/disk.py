"""Benchmark: the disk the README's prerequisites name: what `make demo` takes on a fresh machine, and
the images the container tests make.

    .venv/bin/python -m bench.disk [--skip-fresh]

* images: `docker image inspect`'s size of the project's image (geo-assets:cpu, built from this checkout
  as `make test` builds it), of its Python base and of the Debian base under both (each size includes
  the layers below it);
* a fresh machine: the container of tests/containers/test_fresh_machine.py (Debian bookworm with only
  python3, python3-venv, make and git) clones this checkout's committed HEAD and runs `make demo`, as
  that test does; then `du` of `.venv/` and of the demo's outputs (`.dagster_home/`: the instance and
  the local store), and the container's own writable layer (`docker container inspect --size`), the
  whole clone included. Torch comes from this machine's local wheel folder where it has one.

Every container it starts is removed. Results go to bench/results/disk.json and the disk section of
BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import uuid
from pathlib import Path

from bench.common import REPO, machine_info, publish
from devtools import containers

MEASURES = [
    "bench/disk.py",
    "pyproject.toml",
    "deploy/constraints.txt",
    "deploy/Dockerfile",
    "deploy/base/Dockerfile",
    "Makefile",
    "geo_assets/cli/demo.py",
]
RESULTS = REPO / "bench" / "results" / "disk.json"
FRESH_IMAGE = "geo-assets/fresh-machine:bookworm"  # tests/containers/test_fresh_machine.py's
FRESH_CONTEXT = REPO / "tests/containers/fresh_machine"
CA = "/etc/ssl/certs/ca-certificates.crt"
GB, MB = 1e9, 1e6

# In the fresh container: clone, `make demo`, then the bytes each part takes (du -sb: apparent sizes).
SCRIPT = r"""
set -eu
git config --global --add safe.directory '*'
git clone --quiet "$SOURCE" /root/geo-assets
cd /root/geo-assets
make demo > /root/make-demo.log 2>&1 || { tail -n 40 /root/make-demo.log; exit 1; }
echo "venv $(du -sb .venv | cut -f1)"
echo "outputs $(du -sb .dagster_home | cut -f1)"
"""


def image_size(image: str) -> int:
    return int(containers.docker("image", "inspect", "-f", "{{.Size}}", image).stdout)


def images(tag: str) -> dict:
    containers.app_image(tag=tag)  # as `make test` builds it: the bases first
    return {
        "tag": tag,
        "image_gb": image_size(tag) / GB,
        "python_base_gb": image_size(containers.PYTHON_IMAGE) / GB,
        "debian_base_gb": image_size(containers.DEBIAN_IMAGE) / GB,
    }


def fresh_machine() -> dict:
    containers.build(
        FRESH_IMAGE, FRESH_CONTEXT / "Dockerfile", FRESH_CONTEXT, args={"DEBIAN_IMAGE": containers.debian_image()}
    )
    git_dir = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--path-format=absolute", "--git-common-dir"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    args = [a for path in sorted({str(REPO), git_dir}) for a in ("-v", f"{path}:{path}:ro")]
    env = {"SOURCE": str(REPO)}
    wheels = containers.torch_wheels()
    if wheels:
        args += ["-v", f"{wheels}:/wheels:ro"]
        env["TORCH_WHEELS"] = "/wheels"
    if Path(CA).exists():
        args += ["-v", f"{CA}:{CA}:ro"]
        env["PIP_CERT"] = CA
    name = f"geo-assets-bench-disk-{uuid.uuid4().hex[:8]}"
    env_args = [a for key, value in env.items() for a in ("-e", f"{key}={value}")]
    try:
        proc = subprocess.run(
            ["docker", "run", "--name", name, "--network", "host", *args, *env_args, FRESH_IMAGE, "sh", "-c", SCRIPT],
            capture_output=True,
            text=True,
            timeout=5400,
        )
        if proc.returncode != 0:
            raise SystemExit(f"make demo in the fresh container failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        sizes = dict(line.split() for line in proc.stdout.splitlines() if line.startswith(("venv ", "outputs ")))
        layer = json.loads(containers.docker("container", "inspect", "--size", name).stdout)[0]["SizeRw"]
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, timeout=300)
    return {"venv_gb": int(sizes["venv"]) / GB, "outputs_mb": int(sizes["outputs"]) / MB, "container_gb": layer / GB}


def section(info: dict, result: dict) -> str:
    i, f = result["images"], result.get("fresh")
    fresh = (
        f"""| `.venv/` after `make demo` on a fresh machine | {f["venv_gb"]:.1f} GB |
| the demo's outputs (`.dagster_home/`: instance and local store) | {f["outputs_mb"]:.0f} MB |
| the fresh machine's container (clone, `.venv/`, outputs, pip's cache) | {f["container_gb"]:.1f} GB |"""
        if f
        else "| a fresh machine's `make demo` | not run (`--skip-fresh`) |"
    )
    return f"""## disk: what `make demo` and the container tests take

What is measured: the images' sizes from `docker image inspect` (each includes the layers of the images
below it), and in a fresh Debian bookworm container (tests/containers/fresh_machine/: python3,
python3-venv, make, git) that clones this checkout's committed HEAD and runs `make demo`, `du -sb` of
`.venv/` and `.dagster_home/` and the container's writable layer. Command: `.venv/bin/python -m bench.disk`.
Machine: {info["nproc"]} cores ({info["cpu_model"]}); {info["date"]}.

| | size |
| --- | ---: |
{fresh}
| the project's image `{i["tag"]}` | {i["image_gb"]:.1f} GB |
| its Python base `{containers.PYTHON_IMAGE}` | {i["python_base_gb"]:.2f} GB |
| the Debian base `{containers.DEBIAN_IMAGE}` | {i["debian_base_gb"]:.2f} GB |
"""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.disk", description=__doc__.split("\n\n")[0])
    ap.add_argument("--skip-fresh", action="store_true", help="leave out the fresh machine's `make demo` (minutes)")
    ap.add_argument("--tag", default=containers.APP_IMAGE, help="the image built from this checkout")
    args = ap.parse_args(argv)
    os.chdir(REPO)
    info = machine_info()
    result = {"images": images(args.tag)}
    if not args.skip_fresh:
        result["fresh"] = fresh_machine()
    publish("disk", MEASURES, RESULTS, {"machine": info, **result}, section(info, result), quiet=False)  # sizes
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
