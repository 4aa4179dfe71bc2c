"""Debian packages the tests and the deployment stack need, installed with apt-get when missing:
as root, or through passwordless sudo (CI runners). Once present, nothing is run."""

from __future__ import annotations

import os
import shutil
import subprocess

# apt-get waits for another apt-get's lock instead of failing (two test workers may install at once).
APT = ["apt-get", "-o", "DPkg::Lock::Timeout=300"]


def as_root(packages: list[str], why: str | None = None) -> list[str]:
    """The prefix that runs a command as root here: none, or `sudo -n` where it needs no password.
    `why`: what needs root, when it is not installing `packages` (the message then says so)."""
    if os.geteuid() == 0:
        return []
    if shutil.which("sudo") and subprocess.run(["sudo", "-n", "true"], capture_output=True).returncode == 0:
        return ["sudo", "-n", "DEBIAN_FRONTEND=noninteractive"]
    if why:
        raise RuntimeError(f"{why}, and this user is not root and has no passwordless sudo: run it as root")
    raise RuntimeError(
        f"{', '.join(packages)} not installed and this user cannot install them: "
        f"run `apt-get install -y --no-install-recommends {' '.join(packages)}` as root"
    )


def install(packages: list[str]) -> None:
    """apt-get install `packages` (a fresh machine has no package lists: update once, then retry)."""
    root, env = as_root(packages), {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    cmd = [*root, *APT, "install", "-y", "--no-install-recommends", *packages]
    if subprocess.run(cmd, env=env, capture_output=True).returncode != 0:
        subprocess.run([*root, *APT, "update"], env=env, check=True, capture_output=True)
        again = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if again.returncode != 0:
            raise RuntimeError(f"apt-get could not install {' '.join(packages)}: {again.stderr[-2000:]}")
