"""Debian's Chromium for the browser tests.

Playwright drives it through `executable_path`: `playwright install` downloads its own browser
builds, which an offline machine cannot do. The `chromium` package is installed with apt-get when
missing, as root or through passwordless sudo (CI runners); once present, nothing is run.

    python -m devtools.chromium     install when missing; print the executable's path
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

CANDIDATES = ("chromium", "chromium-browser")
# Several test sessions may install at once: wait for dpkg's lock instead of failing on it.
APT = ["apt-get", "-o", "DPkg::Lock::Timeout=300"]


def executable() -> Path | None:
    """The installed Chromium, or None."""
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return Path(found)
    return None


def _as_root() -> list[str]:
    """The prefix that runs a command as root here: none, or `sudo -n` where it needs no password."""
    if os.geteuid() == 0:
        return []
    if shutil.which("sudo") and subprocess.run(["sudo", "-n", "true"], capture_output=True).returncode == 0:
        return ["sudo", "-n", "DEBIAN_FRONTEND=noninteractive"]
    raise RuntimeError("Chromium is not installed and this user cannot install it: "
                       "run `apt-get install -y --no-install-recommends chromium` as root")


def install() -> Path:
    """apt-get install chromium when it is missing; return its executable."""
    found = executable()
    if found:
        return found
    root = _as_root()
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    cmd = [*root, *APT, "install", "-y", "--no-install-recommends", "chromium"]
    if subprocess.run(cmd, env=env, capture_output=True).returncode != 0:  # a fresh machine has no package lists
        subprocess.run([*root, *APT, "update"], env=env, check=True, capture_output=True)
        again = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if again.returncode != 0:
            raise RuntimeError(f"apt-get could not install chromium: {again.stderr[-2000:]}")
    found = executable()
    if not found:
        raise RuntimeError("apt-get installed chromium but no `chromium` executable is on PATH")
    return found


if __name__ == "__main__":
    print(install())
