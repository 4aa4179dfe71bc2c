"""The README's first command on a fresh machine: `make demo` in a bare Debian bookworm container.

The container (tests/containers/fresh_machine/Dockerfile, image `geo-assets/fresh-machine:bookworm`)
is Debian's minimal system plus only python3, python3-venv, make and git. The checkout is mounted
read-only and cloned inside, so what runs is the *committed* HEAD, not the working tree; then, as
root, `make demo` sets up .venv and runs the whole pipeline to its final tables.

Torch comes the way the README tells a user: where this machine holds the CPU wheel in a local
folder (pip's find-links, devtools.containers.torch_wheels), that folder is mounted and named with
`TORCH_WHEELS`; elsewhere the set-up takes it from PyTorch's CPU wheel index. PyTorch's index is
not reachable on the machines this project is developed on, so its path is exercised against a copy
of its layout served here (test_setup_takes_torch_from_pytorchs_cpu_wheel_index) and by its error
(test_setup_without_any_torch_source_names_each_place_tried).

The machine's CA bundle is mounted and named with PIP_CERT: pip inside a container reaches the
package index only with it.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote

import pytest

from devtools import containers

ROOT = Path(__file__).resolve().parents[2]
IMAGE = "geo-assets/fresh-machine:bookworm"
CONTEXT = Path(__file__).parent / "fresh_machine"
LOG = ROOT / "test-artifacts" / "fresh-machine" / "make-demo.log"
CA = "/etc/ssl/certs/ca-certificates.crt"

# Clone, `make demo`, then what the venv holds. `set -e`: a failed step ends the script with its status.
SCRIPT = r"""
set -eu
git config --global --add safe.directory '*'  # the mounted checkout belongs to another user on CI
git clone --quiet "$SOURCE" /root/geo-assets
cd /root/geo-assets
echo "cloned commit $(git rev-parse HEAD)"
started=$(date +%s)
make demo
echo "make demo took $(( $(date +%s) - started )) s"
.venv/bin/python -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)'
echo "nvidia packages: $(.venv/bin/pip list --format=freeze | grep -ic '^nvidia-' || true)"
du -sh .venv .dagster_home  # the disk it took, for the README's prerequisites
"""


def _git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture(scope="module")
def fresh_machine(engine) -> str:
    """Debian bookworm with python3, python3-venv, make and git only (tens of seconds the first time)."""
    containers.build(IMAGE, CONTEXT / "Dockerfile", CONTEXT, args={"DEBIAN_IMAGE": containers.debian_image()})
    return IMAGE


@pytest.mark.timeout(3600)  # a hung set-up fails here, not at CI's limit
def test_make_demo_on_a_fresh_debian_machine(fresh_machine):
    head = _git("rev-parse", "HEAD")
    # A worktree's checkout points at the repository's git folder elsewhere: mount both, at their own paths.
    mounts = {str(ROOT), _git("rev-parse", "--path-format=absolute", "--git-common-dir")}
    args = [arg for path in sorted(mounts) for arg in ("-v", f"{path}:{path}:ro")]
    env = {"SOURCE": str(ROOT)}
    wheels = containers.torch_wheels()
    if wheels:  # as the README says: TORCH_WHEELS names a folder holding the CPU wheel
        args += ["-v", f"{wheels}:/wheels:ro"]
        env["TORCH_WHEELS"] = "/wheels"
    if Path(CA).exists():
        args += ["-v", f"{CA}:{CA}:ro"]
        env["PIP_CERT"] = CA
    name = f"fresh-machine-{os.getpid()}"
    cmd = [
        "docker",
        "run",
        "--name",
        name,
        "--network",
        "host",
        *args,
        *(a for key, value in env.items() for a in ("-e", f"{key}={value}")),
        fresh_machine,
        "sh",
        "-c",
        SCRIPT,
    ]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=5000)
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, timeout=120)
    out = proc.stdout + proc.stderr
    LOG.parent.mkdir(parents=True, exist_ok=True)
    LOG.write_text(out)
    tail = f"make demo in the container (full log: {LOG}):\n{out[-4000:]}"

    assert proc.returncode == 0, tail
    assert f"cloned commit {head}" in out, tail
    # The demo's summary: the table of materialised assets down to the last one, the held-out scores,
    # the table of the real samples, and its closing line.
    for line in (
        "Materialised assets",
        "region_report",
        "Held-out scores of landcover-unet",
        "Real samples: class shares",
        "Browse it: DAGSTER_HOME=",
    ):
        assert line in out, f"the demo's output lacks {line!r}\n{tail}"
    assert "torch 2.13.0+cpu cuda None" in out, tail
    assert "nvidia packages: 0" in out, tail  # no CUDA wheel was downloaded


def _closed_port() -> int:
    """A local port nothing listens on: bound, then released, so connecting there is refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pip_env(**extra: str) -> dict[str, str]:
    """This process's environment without pip's settings (this machine's name a local wheel folder)
    or the set-up's, and with no pip configuration file; then `extra`."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("PIP_") and key not in ("TORCH_WHEELS", "TORCH_INDEX_URL")
    }
    return env | {"PIP_CONFIG_FILE": os.devnull, "PIP_RETRIES": "0"} | extra


def _dry_run_env(tmp_path: Path, torch_index: str) -> dict[str, str]:
    """A bare venv of this Python first on PATH, and pip told to resolve without installing
    (PIP_DRY_RUN), with `torch_index` as PyTorch's CPU wheel index."""
    subprocess.run(
        [getattr(sys, "_base_executable", sys.executable), "-m", "venv", tmp_path / "venv"], check=True, timeout=120
    )
    env = _pip_env(PATH=f"{tmp_path / 'venv/bin'}:{os.environ['PATH']}", PIP_DRY_RUN="1", TORCH_INDEX_URL=torch_index)
    if "PIP_CERT" in os.environ:
        env["PIP_CERT"] = os.environ["PIP_CERT"]
    return env


@pytest.mark.timeout(300)
@pytest.mark.parametrize("named_by", ["TORCH_WHEELS", "pip's find-links setting"])
def test_setup_takes_torch_from_a_local_wheel_folder(tmp_path, named_by):
    """With the wheel folder named either way the README gives, the torch step of the set-up takes
    2.13.0+cpu from it, with PyTorch's CPU wheel index refusing every connection. A dry run (pip
    resolves and fetches torch's own dependencies' metadata from the package index, installs nothing)."""
    wheels = containers.torch_wheels()
    if wheels is None:
        pytest.skip("this machine holds no local torch wheel folder (pip's find-links, TORCH_WHEELS)")
    env = _dry_run_env(tmp_path, torch_index=f"http://127.0.0.1:{_closed_port()}/whl/cpu")
    if named_by == "TORCH_WHEELS":
        env["TORCH_WHEELS"] = str(wheels)
    else:
        (tmp_path / "pip.conf").write_text(f"[global]\nfind-links = {wheels}\n")
        env["PIP_CONFIG_FILE"] = str(tmp_path / "pip.conf")
    proc = subprocess.run(
        ["sh", "deploy/install-locked.sh", "torch"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=240
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert re.search(r"^Would install .*\btorch-2\.13\.0\+cpu\b", out, re.M), out
    assert "nvidia" not in out.lower(), out


@pytest.mark.timeout(300)
def test_setup_takes_torch_from_pytorchs_cpu_wheel_index(tmp_path):
    """No local wheel folder: the torch step takes 2.13.0+cpu from PyTorch's CPU wheel index, named with
    TORCH_INDEX_URL. The index here is a copy of its layout (PEP 503: simple/torch/ linking the wheel)
    served on 127.0.0.1, the wheel taken from this machine's folder; a dry run, as above."""
    wheels = containers.torch_wheels()
    if wheels is None:
        pytest.skip("this machine holds no local torch wheel to serve as PyTorch's index")
    wheel = next(wheels.glob("torch-2.13.0+cpu-*.whl"))
    project = tmp_path / "index/torch"
    project.mkdir(parents=True)
    try:
        os.link(wheel, project / wheel.name)  # 190 MB: a link where the disk allows one
    except OSError:
        shutil.copy(wheel, project / wheel.name)
    (project / "index.html").write_text(f'<a href="{wheel.name}">{wheel.name}</a>\n')
    asked: list[str] = []

    class Index(SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            asked.append(unquote(self.path))

    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Index, directory=str(tmp_path / "index")))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        env = _dry_run_env(tmp_path, torch_index=f"http://127.0.0.1:{server.server_address[1]}/")
        proc = subprocess.run(
            ["sh", "deploy/install-locked.sh", "torch"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=240
        )
    finally:
        server.shutdown()
        server.server_close()
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert re.search(r"^Would install .*\btorch-2\.13\.0\+cpu\b", out, re.M), out
    assert "nvidia" not in out.lower(), out
    assert f"/torch/{wheel.name}" in asked, asked  # the wheel came from the index, not from a local folder


@pytest.mark.timeout(300)
def test_setup_without_any_torch_source_names_each_place_tried(tmp_path):
    """No local wheel folder and no index that answers: `make setup` stops at torch with one message
    that names each place it tried, PyTorch's CPU wheel index among them. Runs on the host, in a copy
    of the files the set-up reads (not the container: it needs no network at all)."""
    for path in ("Makefile", "pyproject.toml", "dagster.yaml", "deploy/constraints.txt", "deploy/install-locked.sh"):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / path, tmp_path / path)
    index, torch_index = f"http://127.0.0.1:{_closed_port()}/simple", f"http://127.0.0.1:{_closed_port()}/whl/cpu"
    env = _pip_env(PIP_INDEX_URL=index, TORCH_INDEX_URL=torch_index)  # every index refuses at once
    python = getattr(sys, "_base_executable", sys.executable)
    proc = subprocess.run(
        ["make", "setup", f"PYTHON={python}"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert "could not install the locked torch. Tried:" in out, out
    assert "local wheel folders (TORCH_WHEELS, pip's find-links): none set" in out, out
    assert f"the package index (PIP_INDEX_URL): {index}" in out, out
    assert f"PyTorch's CPU wheel index (TORCH_INDEX_URL): {torch_index}" in out, out
    assert "TORCH_WHEELS=<a folder holding the torch wheel>" in out, out
    assert not (tmp_path / ".venv/.installed").exists()
