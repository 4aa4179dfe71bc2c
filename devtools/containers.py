"""A Docker engine and base images made from Debian packages, for the container tests and the
deployment stack on one host (deploy/compose/).

No image registry is reachable from the machines this project is tested on, so nothing is pulled:
the engine is Debian's `docker.io`, started with no bridge network (every container shares the
host's network: `--network host`, compose's `network_mode: host`), and the base images are made
here: `debootstrap --variant=minbase bookworm` imported as `geo-assets/debian:bookworm`, then
deploy/base/Dockerfile adds Debian's Python 3.11 as `geo-assets/python:3.11-bookworm`.

    python -m devtools.containers          # engine up, both base images made (idempotent)
    python -m devtools.containers app      # ... and the project's image, geo-assets:cpu (Leaflet fetched first)

Each step takes a file lock, so two test workers never start two engines or bootstrap twice.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from devtools import apt, leaflet

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / ".cache" / "containers"
DEBIAN_IMAGE = "geo-assets/debian:bookworm"
PYTHON_IMAGE = "geo-assets/python:3.11-bookworm"
APP_IMAGE = "geo-assets:cpu"  # deploy/Dockerfile on the Python base above
PACKAGES = {"dockerd": "docker.io", "debootstrap": "debootstrap", "docker-compose": "docker-compose"}
# The engine as INFRA.md starts it: no bridge, no iptables, so containers only ever see the host's network.
DOCKERD = ["dockerd", "--bridge=none", "--iptables=false", "--ip-masq=false"]
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


class ContainerError(RuntimeError):
    """A container step failed; the message names the step and carries its output's tail."""


@contextmanager
def _lock(name: str) -> Iterator[None]:
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / f"{name}.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def run(*args: str, what: str, timeout: float = 1800, **kw) -> subprocess.CompletedProcess:
    """`args` run to the end; a failure raises ContainerError naming `what` with the output's tail."""
    proc = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, **kw)
    if proc.returncode != 0:
        tail = (proc.stdout[-3000:] + "\n" + proc.stderr[-3000:]).strip()
        raise ContainerError(f"{what} failed (exit {proc.returncode}): {' '.join(args[:6])} ...\n{tail}")
    return proc


def docker(*args: str, what: str | None = None, timeout: float = 1800, **kw) -> subprocess.CompletedProcess:
    return run("docker", *args, what=what or f"docker {args[0]}", timeout=timeout, **kw)


def _installed(binary: str) -> bool:
    # Debian puts dockerd and debootstrap in /usr/sbin, which an ordinary user's PATH leaves out.
    return bool(shutil.which(binary) or shutil.which(binary, path="/usr/local/sbin:/usr/sbin:/sbin"))


def _install_packages() -> None:
    missing = [pkg for binary, pkg in PACKAGES.items() if not _installed(binary)]
    if missing:
        apt.install(missing)


def engine_up() -> bool:
    proc = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=30)
    if "permission denied" in proc.stderr.lower():
        raise ContainerError(
            "the Docker engine runs, but this user may not use its socket (/var/run/docker.sock): "
            "run as root or as a member of the `docker` group"
        )
    return proc.returncode == 0


def ensure_engine(timeout: float = 60.0) -> None:
    """Debian's engine installed and answering; started here (as root, or through sudo) when it is not."""
    with _lock("engine"):
        _install_packages()
        if engine_up():
            return
        log = open(CACHE / "dockerd.log", "ab")
        # Its own session: the engine outlives the test process that started it, like a system service.
        root = apt.as_root(["docker.io"], why="the Docker engine does not answer, and starting dockerd needs root")
        subprocess.Popen([*root, *DOCKERD], stdout=log, stderr=log, start_new_session=True)
        deadline = time.monotonic() + timeout
        while not engine_up():
            if time.monotonic() > deadline:
                raise ContainerError(f"dockerd did not answer within {timeout:.0f} s; see {CACHE / 'dockerd.log'}")
            time.sleep(0.5)


def image_exists(name: str) -> bool:
    return image_id(name) is not None


def image_id(name: str) -> str | None:
    proc = subprocess.run(
        ["docker", "image", "inspect", "-f", "{{.Id}}", name], capture_output=True, text=True, timeout=30
    )
    return proc.stdout.strip() if proc.returncode == 0 else None


def debian_image() -> str:
    """`geo-assets/debian:bookworm`: Debian's minimal base system, bootstrapped from Debian's packages."""
    ensure_engine()
    with _lock("debian"):
        if not image_exists(DEBIAN_IMAGE):
            # A root filesystem is made, and read, as root (debootstrap itself may well be installed).
            root = apt.as_root(["debootstrap"], why=f"making {DEBIAN_IMAGE} runs debootstrap and tar as root")
            rootfs = Path(tempfile.mkdtemp(dir=CACHE)) / "rootfs"
            try:
                run(*root, "debootstrap", "--variant=minbase", "bookworm", str(rootfs), what="debootstrap bookworm")
                tar = subprocess.Popen([*root, "tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
                run("docker", "import", "-", DEBIAN_IMAGE, what="docker import", stdin=tar.stdout)
                tar.wait()
            finally:
                subprocess.run([*root, "rm", "-rf", str(rootfs.parent)], capture_output=True)
    return DEBIAN_IMAGE


def build(
    tag: str,
    dockerfile: str | Path,
    context: str | Path = ROOT,
    *,
    args: dict[str, str] | None = None,
    target: str | None = None,
    timeout: float = 3600,
) -> subprocess.CompletedProcess:
    """`docker build` on the host network (the only one), with its build args."""
    cmd = ["build", "--network", "host", "-f", str(dockerfile), "-t", tag]
    for key, value in (args or {}).items():
        cmd += ["--build-arg", f"{key}={value}"]
    if target:
        cmd += ["--target", target]
    return docker(*cmd, str(context), what=f"building {tag} from {dockerfile}", timeout=timeout)


def python_image() -> str:
    """`geo-assets/python:3.11-bookworm`: the Debian base with Debian's Python 3.11 (deploy/base/Dockerfile)."""
    debian_image()
    with _lock("python"):
        if not image_exists(PYTHON_IMAGE):
            build(
                PYTHON_IMAGE, ROOT / "deploy/base/Dockerfile", ROOT / "deploy/base", args={"DEBIAN_IMAGE": DEBIAN_IMAGE}
            )
    return PYTHON_IMAGE


def torch_wheels() -> Path | None:
    """The local folder holding the CPU torch wheel, where this machine's pip configuration names
    one (`find-links`), or TORCH_WHEELS; None where neither holds a torch wheel."""
    candidates = [os.environ.get("TORCH_WHEELS", "")]
    proc = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True)
    candidates += [line.split("=", 1)[1].strip("'\" ") for line in proc.stdout.splitlines() if "find-links=" in line]
    for folder in (Path(c) for c in candidates if c):
        if any(folder.glob("torch-2.13.0+cpu-*.whl")):  # the glob deploy/install-locked.sh looks for
            return folder
    return None


def fill_wheelhouse(wheelhouse: Path = ROOT / "deploy/wheelhouse") -> None:
    """deploy/wheelhouse/ given what this machine holds that the index does not: the CPU torch wheel
    from the local wheel folder, and the machine's CA bundle for pip inside the build. Hard links
    where they can be (no copy of 190 MB); a wheel already there is kept."""
    wheels = torch_wheels()
    for src in [*wheels.glob("torch-2.13.0+cpu-*.whl")] if wheels else []:
        dst = wheelhouse / src.name
        if not dst.exists():
            try:
                os.link(src, dst)
            except OSError:
                shutil.copy2(src, dst)
    if CA_BUNDLE.exists():
        shutil.copyfile(CA_BUNDLE, wheelhouse / "ca.crt")


def app_image(tag: str = APP_IMAGE, context: Path = ROOT) -> str:
    """The project's image (deploy/Dockerfile) built from `context` on the Debian Python base; the
    engine's layer cache makes a rebuild with unchanged dependencies take seconds. The map page's
    Leaflet is fetched into `context` first (npm): the wheel carries it, and the build refuses a
    context without it."""
    python_image()
    leaflet.install(context / leaflet.TARGET.relative_to(ROOT))
    fill_wheelhouse(context / "deploy/wheelhouse")
    with _lock("app"):
        before = image_id(tag)
        build(tag, context / "deploy/Dockerfile", context, args={"PYTHON_IMAGE": PYTHON_IMAGE})
        if before and before != image_id(tag):  # the image this build replaced, now untagged: its disk back
            subprocess.run(["docker", "image", "rm", before], capture_output=True, timeout=120)  # kept if in use
    return tag


def context_copy(dest: Path, root: Path = ROOT) -> Path:
    """The files deploy/Dockerfile reads (what .dockerignore lets in), copied from `root` to `dest`,
    the wheelhouse's wheels hard-linked (hundreds of MB, never edited): a build context to edit
    (a source-only change, for the cache test and the warm-rebuild benchmark) without editing `root`."""
    junk = shutil.ignore_patterns("__pycache__", "*.pyc")
    for item in ("pyproject.toml", "README.md", ".dockerignore"):
        shutil.copy2(root / item, dest / item)
    for folder in ("geo_assets", "resources"):
        shutil.copytree(root / folder, dest / folder, ignore=junk)
    shutil.copytree(
        root / "deploy",
        dest / "deploy",
        ignore=lambda folder, names: [
            *junk(folder, names),
            *(["wheelhouse"] if Path(folder) == root / "deploy" else []),
        ],
    )
    (dest / "deploy/wheelhouse").mkdir()
    for item in (root / "deploy/wheelhouse").iterdir():
        (os.link if item.suffix == ".whl" else shutil.copy2)(item, dest / "deploy/wheelhouse" / item.name)
    return dest


if __name__ == "__main__":
    print(app_image() if sys.argv[1:] == ["app"] else python_image())
