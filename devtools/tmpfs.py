"""A small tmpfs, mounted for a test that needs a disk that fills up: as root, or through passwordless
sudo (CI runners), owned by the user who asked for it."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class MountRefused(RuntimeError):
    """This user may not mount here (no root, no passwordless sudo, or a container without the right)."""


def _root() -> list[str]:
    if os.geteuid() == 0:
        return []
    if shutil.which("sudo") and subprocess.run(["sudo", "-n", "true"], capture_output=True).returncode == 0:
        return ["sudo", "-n"]
    raise MountRefused("mounting a tmpfs needs root or passwordless sudo")


def _mount(where: Path, options: str) -> None:
    done = subprocess.run(
        [*_root(), "mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True, text=True
    )
    if done.returncode != 0:
        raise MountRefused(f"mount -t tmpfs -o {options} at {where} was refused: {done.stderr.strip()}")


@contextmanager
def tmpfs(where: Path, size: str) -> Iterator[Path]:
    """Mount a tmpfs of `size` (e.g. "1m") at the existing folder `where`; unmount it on exit."""
    _mount(where, f"size={size},mode=0700,uid={os.getuid()},gid={os.getgid()}")
    try:
        yield where
    finally:
        subprocess.run([*_root(), "umount", "--lazy", str(where)], capture_output=True)


def resize(where: Path, size: str) -> None:
    """Give a mounted tmpfs another size (its files stay)."""
    _mount(where, f"remount,size={size}")
