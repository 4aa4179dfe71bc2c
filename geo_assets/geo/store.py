"""A store of objects addressed by relative keys under one root URI.

Only `file://` roots exist so far; the interface is URI-shaped so object stores can follow.
Every write is atomic from a reader's point of view: data goes to a temporary name in the same
directory and is renamed into place, so a reader sees the old object or the new one, never half.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator
from urllib.parse import unquote, urlparse

_SEGMENT = re.compile(r"^[A-Za-z0-9._=+@-]+$")


def validate_key(key: str) -> str:
    """Keys are relative POSIX paths of plain segments: no '..', no absolute paths, no control chars."""
    segments = key.split("/") if isinstance(key, str) else [""]
    for seg in segments:
        if seg in ("", ".", "..") or not _SEGMENT.fullmatch(seg):
            raise ValueError(f"invalid storage key {key!r}: segment {seg!r} is not allowed")
    return key


@dataclass(frozen=True)
class Store:
    root: str  # e.g. file:///home/me/.dagster_home/storage

    def __post_init__(self) -> None:
        parsed = urlparse(self.root)
        if parsed.scheme != "file":
            raise ValueError(
                f"unsupported storage root {self.root!r}: accepted schemes: file:// "
                "(gs:// and s3:// are planned)"
            )

    @property
    def base(self) -> Path:
        return Path(unquote(urlparse(self.root).path))

    def uri(self, key: str) -> str:
        return self.root.rstrip("/") + "/" + validate_key(key)

    def path(self, key: str) -> str:
        """A path GDAL/rasterio can open for reading."""
        return str(self.base / validate_key(key))

    def exists(self, key: str) -> bool:
        return (self.base / validate_key(key)).exists()

    @contextmanager
    def writing(self, key: str) -> Iterator[str]:
        """Yield a local temporary path to write; publish it at `key` atomically on success."""
        final = self.base / validate_key(key)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.parent / f".tmp-{uuid.uuid4().hex}-{final.name}"
        try:
            yield str(tmp)
            os.replace(tmp, final)
        finally:
            if tmp.exists():
                tmp.unlink()

    def write_bytes(self, key: str, data: bytes) -> None:
        with self.writing(key) as tmp:
            Path(tmp).write_bytes(data)

    def read_bytes(self, key: str) -> bytes:
        path = self.base / validate_key(key)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise FileNotFoundError(f"no object at {self.uri(key)}") from None

    def write_json(self, key: str, value: object) -> None:
        self.write_bytes(key, (json.dumps(value, indent=1, sort_keys=True) + "\n").encode())

    def read_json(self, key: str) -> object:
        return json.loads(self.read_bytes(key))

    def list(self, prefix: str) -> list[str]:
        """Keys of the objects directly or indirectly under `prefix`, sorted; temporaries excluded."""
        base = self.base / validate_key(prefix)
        if not base.is_dir():
            return []
        keys = []
        for dirpath, _, files in os.walk(base):
            for name in files:
                if not name.startswith(".tmp-"):
                    keys.append(Path(dirpath, name).relative_to(self.base).as_posix())
        return sorted(keys)


def local_root(path: str | os.PathLike) -> str:
    return Path(path).resolve().as_uri()


