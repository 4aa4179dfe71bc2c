"""Benchmark: the image (deploy/Dockerfile) on the Debian Python base: its size against what its parts
install, a cold build and a warm rebuild after a source-only change.

    .venv/bin/python -m bench.image [--warm-repeats 3] [--skip-cold] [--tag geo-assets:cpu]

Setup (not timed): the engine and the base images (devtools/containers.py), then the image built from
this checkout with the layer cache, as `make test` builds it.

* sizes: `docker image inspect` of the image and of its Python base; inside the image, the installed
  size of each distribution in the venv (the files its RECORD lists): the wheel's runtime dependencies
  (all but geo-assets), and geo-assets itself;
* cold build: `docker build --no-cache` from the Python base: torch from deploy/wheelhouse, every other
  dependency downloaded from the index (so the network's speed counts), the venv copied into the
  runtime stage;
* warm rebuild: the build context copied (devtools.containers.context_copy), one line added to a source
  file, `docker build` with the cache: only the wheel and the project's layers are rebuilt.

Every image and tag the benchmark makes is removed afterwards. Results go to bench/results/image.json
and the image section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from bench.common import REPO, machine_info, publish
from devtools import containers

MEASURES = [
    "bench/image.py",
    "deploy/Dockerfile",
    "deploy/install-locked.sh",
    "deploy/base/Dockerfile",
    "deploy/constraints.txt",
    "pyproject.toml",
    ".dockerignore",
]
RESULTS = REPO / "bench" / "results" / "image.json"
MB = 1e6

# Run in the image: each distribution's installed size, from its RECORD.
SIZES = """
import importlib.metadata as md, json, os
sizes = {}
for dist in md.distributions():
    total = 0
    for f in dist.files or []:
        try:
            total += os.path.getsize(dist.locate_file(f))
        except OSError:
            pass
    sizes[dist.metadata["Name"]] = total
print(json.dumps(sizes))
"""


def image_size(image: str) -> int:
    return int(containers.docker("image", "inspect", "-f", "{{.Size}}", image).stdout)


def timed_build(tag: str, context: Path, *extra: str) -> tuple[float, list[str]]:
    """Seconds a build of `context` takes, and the ids of the images it made (to remove them)."""
    cmd = [
        "docker",
        "build",
        "--network",
        "host",
        *extra,
        "-f",
        str(context / "deploy/Dockerfile"),
        "-t",
        tag,
        "--build-arg",
        f"PYTHON_IMAGE={containers.PYTHON_IMAGE}",
        str(context),
    ]
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"build of {tag} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    made = []
    for step in re.split(r"^Step \d+/\d+ : ", proc.stdout, flags=re.M)[1:]:
        if not step.startswith("FROM ") and "---> Using cache" not in step:
            made += re.findall(r"^ ---> ([0-9a-f]{12})$", step, flags=re.M)
    return seconds, made


def remove(tag: str, made: list[str]) -> None:
    subprocess.run(["docker", "rmi", "-f", tag], capture_output=True, timeout=600)
    for image in reversed(made):  # children first; images others still use stay
        subprocess.run(["docker", "rmi", image], capture_output=True, timeout=600)


def sizes(image: str) -> dict:
    dists = json.loads(containers.docker("run", "--rm", "--network", "host", image, "python", "-c", SIZES).stdout)
    own = dists.pop("geo-assets")
    tooling = {name: dists.pop(name) for name in ("pip", "setuptools") if name in dists}
    base = image_size(containers.PYTHON_IMAGE)
    total = image_size(image)
    deps = sum(dists.values())
    return {
        "image_mb": total / MB,
        "python_base_mb": base / MB,
        "dependencies_mb": deps / MB,
        "dependencies": len(dists),
        "geo_assets_mb": own / MB,
        "pip_setuptools_mb": sum(tooling.values()) / MB,
        "rest_mb": (total - base - deps - own - sum(tooling.values())) / MB,
        "largest": sorted(((n, s / MB) for n, s in dists.items()), key=lambda x: -x[1])[:6],
    }


def warm_rebuilds(repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory(prefix="bench-image-") as tmp:
            context = containers.context_copy(Path(tmp))
            with open(context / "geo_assets/__init__.py", "a") as f:
                f.write(f"# a source-only change {uuid.uuid4().hex}\n")
            tag = f"geo-assets-bench:warm-{uuid.uuid4().hex[:8]}"
            seconds, made = timed_build(tag, context)
            remove(tag, made)
            times.append(seconds)
    return times


def cold_build() -> dict:
    tag = f"geo-assets-bench:cold-{uuid.uuid4().hex[:8]}"
    seconds, made = timed_build(tag, REPO, "--no-cache")
    size = image_size(tag)
    remove(tag, made)
    return {"seconds": seconds, "image_mb": size / MB}


def section(info: dict, result: dict, tag: str) -> str:
    s, warm, cold = result["sizes"], result["warm_s"], result.get("cold")
    largest = ", ".join(f"{n} {mb:,.0f}" for n, mb in s["largest"])
    cold_row = (
        f"| cold build (`--no-cache`, from the Python base) | {cold['seconds']:.0f} s |"
        if cold
        else "| cold build | not run (`--skip-cold`) |"
    )
    return f"""## image: size and build times of deploy/Dockerfile

What is measured: `{tag}` built from this checkout on the Debian Python base (`{containers.PYTHON_IMAGE}`,
made by `python -m devtools.containers`) with the legacy builder on the host network. Sizes from
`docker image inspect`; installed sizes from each distribution's RECORD inside the image. Command:
`.venv/bin/python -m bench.image`. Machine: {info["nproc"]} cores ({info["cpu_model"]}), Python
{info["python"]}; {info["date"]}; 1-min load average {info["loadavg_1min_at_start"]} at the start.

| | size (MB) |
| --- | ---: |
| **image** | **{s["image_mb"]:,.0f}** |
| Python base (Debian bookworm, python3) | {s["python_base_mb"]:,.0f} |
| the wheel's runtime dependencies, installed ({s["dependencies"]} distributions) | {s["dependencies_mb"]:,.0f} |
| geo-assets itself | {s["geo_assets_mb"]:,.1f} |
| pip and setuptools in the venv | {s["pip_setuptools_mb"]:,.0f} |
| the rest (venv scripts, byte code not in RECORDs, user, instance yamls) | {s["rest_mb"]:,.0f} |

Largest dependencies (MB): {largest}.

| build | time |
| --- | ---: |
{cold_row}
| warm rebuild after a source-only change (median of {len(warm)}) | {statistics.median(warm):.1f} s |

Warm rebuilds: {", ".join(f"{t:.1f}" for t in warm)} s. The cold build downloads every dependency but
torch from the index, so it measures the network as much as the machine.
"""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.image", description=__doc__.split("\n\n")[0])
    ap.add_argument("--warm-repeats", type=int, default=3)
    ap.add_argument("--skip-cold", action="store_true", help="leave out the --no-cache build (minutes)")
    ap.add_argument("--tag", default=containers.APP_IMAGE, help="the image built from this checkout")
    args = ap.parse_args(argv)

    info = machine_info()
    tag = containers.app_image(tag=args.tag)  # setup: the cache the warm rebuilds start from
    result = {"tag": tag, "sizes": sizes(tag), "warm_s": warm_rebuilds(args.warm_repeats)}
    if not args.skip_cold:
        result["cold"] = cold_build()
    publish("image", MEASURES, RESULTS, {"machine": info, **result}, section(info, result, args.tag))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
