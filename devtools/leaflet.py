"""Leaflet for the map page, from npm at set-up (never from a CDN at view time).

`npm pack` fetches the pinned release's tarball; its SHA-512 must equal the integrity pinned here
(the registry's own `dist.integrity` of that release), or nothing is extracted. Its dist/ (script,
styles, marker images) and licence go to geo_assets/map/page/leaflet/, a git-ignored folder that the
wheel (pyproject package-data) and the image (built from the wheel) carry. npm is needed by the map
page only: `make demo` and the tile server run without it.

    python -m devtools.leaflet      fetch when missing or of another version; print the folder
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import json
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

VERSION = "1.9.4"
INTEGRITY = "sha512-nxS1ynzJOmOlHp+iL3FyWqK89GtNL8U8rvlMOsQdTTssxZwCXh8N2NB3GDQOL+YR3XnWyZAxwQixURb+FA74PA=="
TARGET = Path(__file__).resolve().parents[1] / "geo_assets" / "map" / "page" / "leaflet"


def installed(target: Path | None = None) -> bool:
    target = target or TARGET
    stamp = target / "VERSION"
    return stamp.is_file() and stamp.read_text().strip() == VERSION and (target / "leaflet.js").is_file()


def integrity(path: Path) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(path.read_bytes()).digest()).decode()


def install(target: Path | None = None) -> Path:
    """Leaflet in `target` (default TARGET: this checkout's page), fetched once; parallel test processes
    wait for the one that fetches it."""
    target = target or TARGET
    if installed(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / ".leaflet.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return target if installed(target) else _fetch(target)


def _fetch(target: Path) -> Path:
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError(
            "npm is not installed: the map page needs it once, to fetch Leaflet "
            f"{VERSION} (apt-get install npm, or Node.js's installer); the rest of the project does not"
        )
    with tempfile.TemporaryDirectory() as tmp:
        packed = subprocess.run(
            [npm, "pack", f"leaflet@{VERSION}", "--json", "--pack-destination", tmp],
            capture_output=True,
            text=True,
            timeout=300,
        )
        if packed.returncode != 0:
            raise RuntimeError(f"npm pack leaflet@{VERSION} failed: {packed.stderr.strip()[-2000:]}")
        tarball = Path(tmp) / json.loads(packed.stdout)[0]["filename"]
        found = integrity(tarball)
        if found != INTEGRITY:
            raise RuntimeError(
                f"leaflet@{VERSION} from npm has integrity {found}, not the pinned {INTEGRITY}: not installed"
            )
        staging = Path(tmp) / "leaflet"
        with tarfile.open(tarball) as tar:
            members = [
                m
                for m in tar.getmembers()
                if m.isfile()
                and (m.name.startswith("package/dist/") or m.name == "package/LICENSE")
                and not m.name.endswith((".map", "-src.js", "-src.esm.js", ".esm.js"))
            ]
            for m in members:
                relative = Path(m.name).relative_to("package/dist" if m.name.startswith("package/dist/") else "package")
                out = staging / relative
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_bytes(tar.extractfile(m).read())  # names checked above: no member escapes `staging`
        (staging / "VERSION").write_text(VERSION + "\n")
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(staging, target)
    return target


if __name__ == "__main__":
    import sys

    try:
        print(install())
    except RuntimeError as exc:
        print(f"devtools.leaflet: {exc}", file=sys.stderr)
        sys.exit(1)
