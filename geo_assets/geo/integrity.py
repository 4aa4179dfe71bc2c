"""Reads checked against the digests recorded when the objects were written.

A store holds what anyone with write access put there: a model file copied over another version's,
an imagery tile copied over its neighbour's. Each is read whole anyway, so each is checked in full:

- model files (model.pt2, model.onnx: a few MB at most): size, then sha256 of the bytes loaded,
  against `files` in the version's model.json;
- imagery tiles: the pixel digest their manifest entry records (`pixel_digest`, blake2b of the
  decoded pixels), on every decode. Measured by bench/tile_digest.py (loaded 2-core AMD EPYC, CPU
  per 256 px tile): 0.6 ms to digest 4 uint16 bands against 2.1 ms to read them (1.9 against 5.4 ms
  at 13 bands), about 2% of a tile's prediction (31 ms of CPU a tile: BENCHMARKS.md "predictions").
  Small enough for the full digest, which also catches a tile of the same size and other pixels that
  a size and header check would pass.
"""

from __future__ import annotations

import hashlib
import os

import numpy as np

from geo_assets.geo.store import CorruptObjectError

CHUNK = 2**20


class DigestMismatchError(CorruptObjectError):
    """An object whose bytes or pixels are not those recorded when it was written."""


def pixel_digest(array: np.ndarray) -> str:
    """A content hash of a tile's pixels: manifests carry it so data versions change with the data."""
    h = hashlib.blake2b(digest_size=12)
    h.update(f"{array.dtype.str}{array.shape}".encode())
    h.update(np.ascontiguousarray(array).tobytes())
    return h.hexdigest()


def file_record(path: str | os.PathLike) -> dict:
    """{"bytes", "sha256"} of a local file, as model.json records each model file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return {"bytes": os.path.getsize(path), "sha256": h.hexdigest()}


def check_file(uri: str, path: str | os.PathLike, recorded: dict) -> None:
    """Refuse a local copy of `uri` whose size or sha256 is not `recorded` (file_record's)."""
    size = os.path.getsize(path)
    if size != recorded["bytes"]:
        raise DigestMismatchError(
            f"{uri} is {size:,} bytes, but {recorded['bytes']:,} bytes with sha256 {recorded['sha256']} were "
            "recorded when it was written: it was replaced or damaged since; refusing to use it"
        )
    found = file_record(path)["sha256"]
    if found != recorded["sha256"]:
        raise DigestMismatchError(
            f"{uri} has sha256 {found}, but {recorded['sha256']} was recorded when it was written: "
            "it was replaced or damaged since; refusing to use it"
        )


def check_pixels(what: str, data: np.ndarray, recorded: str | None) -> None:
    """Refuse decoded pixels whose digest is not the one the manifest recorded (None: nothing recorded)."""
    if recorded is None:
        return
    found = pixel_digest(data)
    if found != recorded:
        raise DigestMismatchError(
            f"{what} does not hold the pixels its manifest records (pixel digest {recorded}, found {found}): "
            "the file was replaced or damaged since it was written; re-materialise imagery_tiles for it"
        )
