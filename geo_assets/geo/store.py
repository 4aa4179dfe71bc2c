"""A store of objects addressed by relative keys under one root URI: file://, s3:// or gs://.

`Store(root)` (or `make_store(root, endpoint_url=..., ...)` with credentials) picks the class by
scheme: LocalStore, S3Store or GCSStore. They share one interface:

- object operations: `exists`, `read_bytes`/`write_bytes`, `read_json`/`write_json`, `list`,
  `delete`, `scan` (one listing request: a page of objects after a key, with their versions),
  `folders` (the folders under a prefix), `writing(key)` (a local temporary file published on success) and `local_copy(key)`
  (a local file with the object's bytes, for readers that need a real file, e.g. torch.export.load);
- raster reads: `path(key)` is what GDAL opens (a local path, `/vsis3/bucket/key` or
  `/vsigs/bucket/key`) inside `with store.env():`, which configures GDAL for this store.

Every write is atomic from a reader's point of view, so a reader sees the old object or the new
one, never half: locally data goes to a temporary name in the same directory and is renamed into
place; object stores publish an object only when its upload completes, so a write is one upload.

Remote stores split their I/O on purpose. Rasters are read by GDAL's own /vsis3/ and /vsigs/
drivers: COG windowed reads with merged range requests and header caching, the same path
production uses (fsspec would add a second HTTP stack under rasterio). Whole objects (put, get,
list, delete) go through fsspec (s3fs, gcsfs), which give clear exceptions per failure.

Credentials are fields with repr=False, and every backend error is re-raised as our own message
naming the object URI or bucket and the problem, with any credential text removed. The S3 client's
retries of throttled, failed or timed-out requests are counted and logged (geo/retries.py). A local
write that leaves its device full is never published: its writer may have been cut short silently.
"""

from __future__ import annotations

import builtins  # the stores' annotations below their own `list` method name the type as builtins.list
import errno
import glob
import hashlib
import json
import logging
import os
import re
import tempfile
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import unquote, urlparse

from geo_assets.geo import retries
from geo_assets.geo.messages import shown

__all__ = [
    "BucketNotFoundError",
    "CorruptObjectError",
    "GCSStore",
    "LocalStore",
    "ObjectInfo",
    "ObjectNotFoundError",
    "ObjectStore",
    "PAGE",
    "S3Store",
    "SCHEMES",
    "Store",
    "local_root",
    "make_store",
    "validate_key",
]

log = logging.getLogger(__name__)

_SEGMENT = re.compile(r"^[A-Za-z0-9._=+@-]+$")
# A local write's temporary (LocalStore.writing), and any file its writer put beside it (GDAL's
# `.ovr.tmp`, `.aux.xml`): never an object, but a killed writer leaves it.
_TEMPORARY = re.compile(r"^\.tmp-[0-9a-f]{32}-")
# S3 and GCS bucket names: lowercase letters, digits, dots, hyphens (GCS also underscores).
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$")
SCHEMES = ("file://", "gs://", "s3://")

# GDAL options for every remote raster read. GDAL retries 429 and 5xx answers, resets and timeouts, and
# sets no timeout of its own: a stalled answer hung a read for good. An attempt gets 5 s to connect and
# 30 s in all (a tile is a few MB at most; a source COG's reads get as long, geo/stac/reads.py); GDAL's low-speed
# limit would end a stalled attempt too, but GDAL does not retry what it ends.
_GDAL_REMOTE = {
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",  # we know the object's name: no LIST per open
    "GDAL_HTTP_MAX_RETRY": str(retries.GDAL_ATTEMPTS - 1),
    "GDAL_HTTP_RETRY_DELAY": "0.5",
    "GDAL_HTTP_CONNECTTIMEOUT": "5",
    "GDAL_HTTP_TIMEOUT": "30",
}


class BucketNotFoundError(FileNotFoundError):
    """The storage root's bucket does not exist (a configuration error, unlike a missing object)."""


class CorruptObjectError(ValueError):
    """An object that exists but cannot be read as what it should be (a truncated or empty JSON record)."""


class ObjectNotFoundError(FileNotFoundError):
    """No object at a URI."""


@dataclass(frozen=True)
class ObjectInfo:
    """One object as a listing reports it."""

    key: str  # relative to the store's root, as listed (not validated: listings may hold any name)
    version: str  # changes with every write: S3 ETag-LastModified, GCS generation, local inode-mtime-size
    # When this version arrived (at the latest), epoch seconds: S3 LastModified, GCS timeCreated, local ctime.
    modified: float

    @property
    def ref(self) -> str:
        return f"{self.key}@{self.version}"


PAGE = 1000  # the most keys one S3 or GCS listing request returns


def validate_key(key: str) -> str:
    """Keys are relative POSIX paths of plain segments: no '..', no absolute paths, no control chars."""
    segments = key.split("/") if isinstance(key, str) else [""]
    for seg in segments:
        if seg in ("", ".", "..") or not _SEGMENT.fullmatch(seg):
            raise ValueError(f"invalid storage key {shown(key)}: segment {shown(seg)} is not allowed")
    return key


def _unsupported(root: object) -> ValueError:
    return ValueError(f"unsupported storage root {root!r}: accepted schemes: {', '.join(SCHEMES)}")


def _store_class(root: object) -> type[Store]:
    scheme = urlparse(root).scheme if isinstance(root, str) else None
    classes: dict[str | None, type[Store]] = {"file": LocalStore, "s3": S3Store, "gs": GCSStore}
    if scheme not in classes:
        raise _unsupported(root)
    return classes[scheme]


@dataclass(frozen=True)
class Store(ABC):
    """The interface; `Store(root, ...)` builds the subclass for the root's scheme."""

    root: str  # e.g. file:///home/me/.dagster_home/storage, s3://bucket/prefix, gs://bucket

    def __new__(cls, *args: Any, **kwargs: Any):
        # Like pathlib.Path: calling the base picks the concrete class by scheme, so code holding
        # a root string needs no switch. (Unpickling calls __new__ on the concrete class itself.)
        if cls is Store:
            cls = _store_class(args[0] if args else kwargs.get("root"))
        return super().__new__(cls)

    def uri(self, key: str) -> str:
        return self.root.rstrip("/") + "/" + validate_key(key)

    @abstractmethod
    def path(self, key: str) -> str:
        """A path GDAL/rasterio can open for reading, inside `with self.env():`."""

    @abstractmethod
    def env(self) -> AbstractContextManager:
        """GDAL configuration for reading `path()`s of this store. Enter it in the thread that reads:
        rasterio keeps config options per thread, so a pool's work units each enter their own."""

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def writing(self, key: str, room: int = 0) -> AbstractContextManager[str]:
        """Yield a local temporary path to write; publish it at `key` atomically on success.

        `room`: about the bytes the write needs, where the caller knows (0: unknown): a device with less
        free space is refused before the write starts, naming it. A write that fails on a full device
        (ENOSPC, or a few blocks left once it failed) fails naming the device."""

    @abstractmethod
    def write_bytes(self, key: str, data: bytes) -> None: ...

    @abstractmethod
    def read_bytes(self, key: str) -> bytes: ...

    @abstractmethod
    def list(self, prefix: str, temporaries: bool = False) -> list[str]:
        """Keys of the objects directly or indirectly under `prefix`, sorted. `temporaries`: with the
        temporary files writers killed mid-write left behind (`leftover`), for the paths that delete."""

    @abstractmethod
    def scan(
        self, prefix: str, start_after: str = "", limit: int = PAGE, moved_depth: int = 0
    ) -> tuple[builtins.list[ObjectInfo], bool]:
        """One listing request: up to `limit` objects under `prefix` whose keys sort after `start_after`,
        in the server's listing order, and whether more follow. Pass the last key back as `start_after`
        to go on; `start_after` need not exist (it never makes a listing start over, unlike a cursor
        key that was deleted). `moved_depth` (local folders only; an object store has no folders):
        a folder whose key has at least that many parts stamps its ctime on the arrival time of what
        lies under it, so a folder moved in whole (`mv`, whose files keep their ctimes) arrives when it
        moved."""

    @abstractmethod
    def folders(self, prefix: str) -> builtins.list[str]:
        """Names of the folders directly under `prefix` (common prefixes), sorted."""

    def moved_folders(self, prefix: str, depth: int) -> builtins.list[tuple[str, float]]:
        """(key, ctime) of the folders under `prefix` whose keys have fewer than `depth` parts and whose last
        change was to the folder itself, not to its entries (a rename into place, a chmod: a ctime after
        the mtime). Only a local root has folders."""
        return []

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove the object at `key`; nothing happens when there is none."""

    @abstractmethod
    def local_copy(self, key: str) -> AbstractContextManager[str]:
        """Yield a local file path holding the object's bytes, to read only: for a local store it is
        the stored file itself; for an object store a private copy, removed on exit."""

    # -- conditional writes: one writer wins a race (the primitives of geo/leases.py)

    @abstractmethod
    def create(self, key: str, data: bytes) -> bool:
        """Write `data` at `key` only where no object is; False where one is. Of writers racing to
        create the same key, exactly one gets True."""

    @abstractmethod
    def read_versioned(self, key: str) -> tuple[bytes, str] | None:
        """The object's bytes and the version they are (one read), or None where there is none."""

    @abstractmethod
    def replace(self, key: str, data: bytes, version: str) -> bool:
        """Write `data` at `key` only if the object is still at `version`; False if it has changed
        or is gone."""

    def write_json(self, key: str, value: object) -> None:
        self.write_bytes(key, (json.dumps(value, indent=1, sort_keys=True) + "\n").encode())

    def read_json(self, key: str) -> Any:  # a JSON document: its shape is the caller's to know
        data = self.read_bytes(key)
        try:
            return json.loads(data)
        except ValueError as exc:
            raise CorruptObjectError(f"{self.uri(key)} is not valid JSON ({len(data)} bytes): {exc}") from None


_FULL = 64 << 10  # a device with less free space than this is full: a few blocks


def _free_bytes(folder: Path) -> int:
    try:
        st = os.statvfs(folder)
    except OSError:
        return _FULL
    return st.f_bavail * st.f_frsize


def _check_room(written: str | Path) -> None:
    """Refuse to publish a file written on a device left (nearly) full: its writer may have been cut
    short without saying so (GDAL has returned success with a raster's last blocks unwritten). Tiles'
    COGs are written by Python (geo_assets.geo.cog), whose OSError carries ENOSPC. Writers that fail
    without the errno (GDAL's mosaic, torch's archive writer) are named full when the device has under
    _FULL bytes free once they failed; a mosaic, whose failed write GDAL removes itself, is refused
    before it starts when the device has less room than its tiles take."""
    free = _free_bytes(Path(written).parent)
    if free < _FULL:
        raise OSError(errno.ENOSPC, f"the device was left with {free:,} bytes free: the file may be cut short")


def _full(exc: BaseException, free: int) -> bool:
    """Whether a write that raised `exc` failed for want of space, `free` bytes left once it failed."""
    if not isinstance(exc, Exception):
        return False  # an interrupt, an exit
    return getattr(exc, "errno", None) == errno.ENOSPC or free < _FULL


def _room_for(room: int, folder: Path, what: str, advice: str = "free space or choose another storage root") -> None:
    """Refuse a write of about `room` bytes into `folder` before it starts when its device has less free.
    Checked before, not guessed after: a failure with little space left may have another cause."""
    free = _free_bytes(folder) if room else room
    if free < room:
        raise OSError(
            errno.ENOSPC,
            f"{what} needs about {room:,} bytes and the device of {folder} has {free:,} free: no space left "
            f"for it; {advice}",
        )


@dataclass(frozen=True)
class LocalStore(Store):
    """Files under a file:// root."""

    def __post_init__(self) -> None:
        if urlparse(self.root).scheme != "file":
            raise _unsupported(self.root)

    @property
    def base(self) -> Path:
        return Path(unquote(urlparse(self.root).path))

    def path(self, key: str) -> str:
        return str(self.base / validate_key(key))

    def env(self) -> AbstractContextManager:
        import rasterio

        # Every raster of the store is a self-contained COG: no sidecar files to look for. Without this
        # GDAL lists the folder on each open, and a region's folder holds thousands of tiles (0.4 ms
        # of a tile's 2.1 ms read: bench.tile_io).
        return rasterio.Env(GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR")

    def exists(self, key: str) -> bool:
        return (self.base / validate_key(key)).is_file()

    @contextmanager
    def writing(self, key: str, room: int = 0) -> Iterator[str]:
        final = self.base / validate_key(key)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.parent / f".tmp-{uuid.uuid4().hex}-{final.name}"
        _room_for(room, final.parent, f"local store: writing {self.uri(key)}")
        try:
            yield str(tmp)
            _check_room(tmp)
            os.replace(tmp, final)
        except BaseException as exc:
            free = _free_bytes(final.parent)  # before the cleanup gives some back
            # A failed write removes its temporary and whatever its writer put beside it (GDAL's
            # `.ovr.tmp`). Only then: a listing of a folder of thousands of tiles per write would cost.
            for left in final.parent.glob(glob.escape(tmp.name) + "*"):
                left.unlink(missing_ok=True)
            if _full(exc, free):
                # Writers say it their own way (GDAL: "IO error writing tag data"): name the cause.
                raise OSError(
                    errno.ENOSPC,
                    f"local store: writing {self.uri(key)} failed: no space left on the device "
                    f"of {self.base} ({free:,} bytes free): free space or choose another storage "
                    f"root ({type(exc).__name__}: {exc})",
                ) from exc
            raise

    def write_bytes(self, key: str, data: bytes) -> None:
        with self.writing(key) as tmp:
            Path(tmp).write_bytes(data)

    def read_bytes(self, key: str) -> bytes:
        path = self.base / validate_key(key)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise ObjectNotFoundError(f"no object at {self.uri(key)}") from None

    def list(self, prefix: str, temporaries: bool = False) -> list[str]:
        """As Store.list; leftover temporaries of killed writers only when asked for (the store's own
        `.tmp-lock` files never: a lock is not a leftover, and removing one held would let two in)."""
        base = self.base / validate_key(prefix)
        if not base.is_dir():
            return []
        keys = []
        for dirpath, _, files in os.walk(base):
            for name in files:
                if not name.startswith(".tmp-") or (temporaries and _TEMPORARY.match(name)):
                    keys.append(Path(dirpath, name).relative_to(self.base).as_posix())
        return sorted(keys)

    def scan(
        self, prefix: str, start_after: str = "", limit: int = PAGE, moved_depth: int = 0
    ) -> tuple[builtins.list[ObjectInfo], bool]:
        """As Store.scan, in S3's order (keys as UTF-8 bytes); folders wholly before `start_after` are
        not entered, so a page costs about as much as the keys it returns."""
        if not 1 <= limit <= PAGE:
            raise ValueError(f"limit must be between 1 and {PAGE}, got {limit}")
        found: list[ObjectInfo] = []

        def walk(path: Path, key_prefix: str, stamp: float) -> bool:  # False: the page is full
            try:
                entries = list(os.scandir(path))
                if moved_depth and key_prefix.count("/") >= moved_depth:
                    stamp = max(stamp, path.stat().st_ctime)  # a rename stamps the moved folder's ctime
            except (FileNotFoundError, NotADirectoryError):
                return True
            # A folder sorts as "name/": that is where its keys fall among its siblings' keys.
            named = {(e.name + "/" if e.is_dir(follow_symlinks=False) else e.name): e for e in entries}
            for name, entry in sorted(named.items()):
                key = key_prefix + name
                if name.endswith("/"):
                    if start_after > key and not start_after.startswith(key):
                        continue  # every key under it sorts before start_after
                    if not walk(Path(entry.path), key, stamp):
                        return False
                elif key > start_after and not name.startswith(".tmp-") and entry.is_file():
                    if len(found) == limit:
                        return False
                    try:
                        st = entry.stat()
                    except FileNotFoundError:  # removed since the folder was read
                        continue
                    # The version names the bytes (a rewrite is a new inode or mtime), not the metadata: a
                    # chmod moves the ctime, hence the arrival time, but is no new version.
                    version = f"{st.st_ino:x}-{st.st_mtime_ns:x}-{st.st_size:x}"
                    found.append(ObjectInfo(key, version, max(st.st_ctime, stamp)))
            return True

        complete = walk(self.base / validate_key(prefix), validate_key(prefix) + "/", 0.0)
        return found, not complete

    def folders(self, prefix: str) -> builtins.list[str]:
        try:
            entries = list(os.scandir(self.base / validate_key(prefix)))
        except (FileNotFoundError, NotADirectoryError):
            return []
        return sorted(e.name for e in entries if e.is_dir(follow_symlinks=False))

    def moved_folders(self, prefix: str, depth: int) -> builtins.list[tuple[str, float]]:
        found = []
        level = [validate_key(prefix)]
        while level and level[0].count("/") + 2 < depth:  # the parts of the folders one level down
            below = []
            for parent in level:
                try:
                    entries = list(os.scandir(self.base / parent))
                except (FileNotFoundError, NotADirectoryError):
                    continue
                for e in entries:
                    if e.is_dir(follow_symlinks=False) and not e.name.startswith(".tmp-"):
                        try:
                            st = e.stat(follow_symlinks=False)
                        except FileNotFoundError:
                            continue
                        if st.st_ctime_ns > st.st_mtime_ns:
                            found.append((f"{parent}/{e.name}/", st.st_ctime))
                        below.append(f"{parent}/{e.name}")
            level = below
        return sorted(found)

    def delete(self, key: str) -> None:
        (self.base / validate_key(key)).unlink(missing_ok=True)

    @contextmanager
    def local_copy(self, key: str) -> Iterator[str]:
        path = self.base / validate_key(key)
        if not path.is_file():
            raise ObjectNotFoundError(f"no object at {self.uri(key)}")
        yield str(path)  # already a local file: no copy

    @contextmanager
    def _folder_lock(self, key: str) -> Iterator[Path]:
        """An exclusive lock on the key's folder, for one read-compare-write: processes on this machine
        (the only ones that share a file:// root) take turns. The lock file's `.tmp-` name keeps it out
        of listings."""
        import fcntl

        path = self.base / validate_key(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path.parent / ".tmp-lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield path  # the lock goes with the file's closing

    def create(self, key: str, data: bytes) -> bool:
        with self._folder_lock(key) as path:
            if path.exists():
                return False
            self.write_bytes(key, data)
            return True

    def read_versioned(self, key: str) -> tuple[bytes, str] | None:
        try:
            data = (self.base / validate_key(key)).read_bytes()  # replaced whole (os.replace): never half
        except FileNotFoundError:
            return None
        return data, hashlib.sha256(data).hexdigest()

    def replace(self, key: str, data: bytes, version: str) -> bool:
        with self._folder_lock(key):
            found = self.read_versioned(key)
            if found is None or found[1] != version:
                return False
            self.write_bytes(key, data)
            return True


@dataclass(frozen=True)
class ObjectStore(Store):
    """Objects in a bucket, under an optional prefix: `<scheme>://bucket[/prefix]`."""

    scheme: ClassVar[str]
    vsi: ClassVar[str]  # GDAL's virtual file system prefix
    label: ClassVar[str]  # the service's name, for messages

    endpoint_url: str | None = None  # None: the cloud itself; else an emulator or another provider
    anonymous: bool = False

    def __post_init__(self) -> None:
        parsed = urlparse(self.root)
        if parsed.scheme != self.scheme:
            raise _unsupported(self.root)
        if not _BUCKET.fullmatch(parsed.netloc):
            raise ValueError(f"invalid storage root {self.root!r}: {parsed.netloc!r} is not a bucket name")
        prefix = parsed.path.strip("/")
        if prefix:
            validate_key(prefix)
        if parsed.params or parsed.query or parsed.fragment:
            raise ValueError(f"invalid storage root {self.root!r}: no parameters, query or fragment allowed")
        if self.endpoint_url is not None:
            endpoint = urlparse(self.endpoint_url)
            if endpoint.scheme not in ("http", "https") or not endpoint.netloc:
                raise ValueError(f"invalid endpoint_url {self.endpoint_url!r}: expected http(s)://host[:port]")

    # -- state that is not configuration: built lazily, never pickled (a Store travels to Dask
    # workers as its fields alone; each process builds its own clients).

    def __getstate__(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def _cached(self, name: str, build):
        cache = self.__dict__.setdefault("_cache", {})
        # fsspec clients own an event loop thread: one made before a fork is unusable after it.
        slot = (name, os.getpid())
        if slot not in cache:
            cache[slot] = build()
        return cache[slot]

    @property
    def bucket(self) -> str:
        return urlparse(self.root).netloc

    @property
    def prefix(self) -> str:
        return urlparse(self.root).path.strip("/")

    def _object(self, key: str) -> str:
        """`bucket/prefix/key`, the name fsspec and GDAL's /vsi paths use."""
        return "/".join(p for p in (self.bucket, self.prefix, validate_key(key)) if p)

    def path(self, key: str) -> str:
        return f"{self.vsi}{self._object(key)}"

    def _vsi_root(self) -> str:
        return f"{self.vsi}{'/'.join(p for p in (self.bucket, self.prefix) if p)}"

    def _gdal_options(self) -> dict[str, str]:
        """GDAL's options for this store's raster reads, whose retries are counted from here on."""
        retries.count_gdal_retries()
        return {
            **_GDAL_REMOTE,
            # GDAL caches object sizes and blocks per URL for the whole process, but our writes go
            # through fsspec and may replace an object GDAL has read: without this, a re-read after
            # an overwrite returns the old object's bytes. Caching within one open is kept.
            "CPL_VSIL_CURL_NON_CACHED": self._vsi_root(),
        }

    # -- errors

    def _secrets(self) -> list[str]:
        return []

    def _redact(self, text: str) -> str:
        for secret in self._secrets():
            if secret and len(secret) >= 4:
                text = text.replace(secret, "***")
        return text

    def _bucket_exists(self) -> bool:
        """Asked only after a not-found answer, which S3 and GCS give alike for both."""
        try:
            self._cached("bucket", lambda: self._fs().info(self.bucket))  # remembered once seen
        except FileNotFoundError:
            return False
        except Exception:  # denied, unreachable: no proof that the bucket is missing
            pass
        return True

    @contextmanager
    def _errors(self, action: str, target: str) -> Iterator[None]:
        """Re-raise backend errors as ours: the URI or bucket and the problem, never credentials.

        The backend's exception is not chained (`from None`): tracebacks in the Dagster UI show
        chained causes, and a client library's message is not ours to vouch for.
        """
        with retries.collecting() as retried:
            try:
                yield
            except Exception as exc:
                raise self._error(exc, action, target, retried) from None
        if retried:  # succeeded, after the client's retries: said, never silent
            log.warning("%s %s: succeeded after retries: %s", action, target, retries.describe(retried))

    def _error(self, exc: Exception, action: str, target: str, retried: list[str]) -> Exception:
        if isinstance(exc, FileNotFoundError):
            if not self._bucket_exists():
                return BucketNotFoundError(
                    f"{self.label} bucket {self.bucket!r} does not exist (while {action} {target}); "
                    "create it or fix the storage root"
                )
            return ObjectNotFoundError(f"no object at {target}")
        if isinstance(exc, PermissionError):
            return PermissionError(
                f"access denied to {self.label} bucket {self.bucket!r} (while {action} {target}): "
                "the credentials were refused or lack permission"
            )
        # Connection refused, timeouts, server errors: the client has retried them already.
        detail = self._redact(f"{type(exc).__name__}: {exc}")
        after = f" after {len(retried) + 1} attempts (retries: {retries.describe(retried)})" if retried else ""
        return OSError(f"{self.label} store: {action} {target} failed{after}: {detail}")

    # -- object operations, through fsspec

    @abstractmethod
    def _new_fs(self): ...

    def _fs(self):
        return self._cached("fs", self._new_fs)

    def exists(self, key: str) -> bool:
        target = self.uri(key)
        try:
            with self._errors("checking", target):
                return self._fs().info(self._object(key))["type"] == "file"
        except ObjectNotFoundError:
            return False

    @contextmanager
    def writing(self, key: str, room: int = 0) -> Iterator[str]:
        target = self.uri(key)
        name = validate_key(key).rsplit("/", 1)[-1]
        # The temporary is local and private: nothing reaches the bucket unless the block succeeds.
        with tempfile.TemporaryDirectory(prefix="geo-assets-") as tmpdir:
            tmp = os.path.join(tmpdir, name)
            _room_for(
                room,
                Path(tmpdir),
                f"{self.label} store: writing {target} through the local temporary",
                "free space there or set TMPDIR",
            )
            try:
                yield tmp
            except BaseException as exc:
                free = _free_bytes(Path(tmpdir))
                if _full(exc, free):
                    raise OSError(
                        errno.ENOSPC,
                        f"{self.label} store: writing {target} failed: no space left on the device of the "
                        f"local temporary {tmpdir} ({free:,} bytes free): free space there or set TMPDIR "
                        f"({type(exc).__name__}: {exc})",
                    ) from exc
                raise
            if not os.path.isfile(tmp):
                raise FileNotFoundError(f"nothing was written to the temporary file for {target}")
            try:
                _check_room(tmp)
            except OSError as exc:
                raise OSError(
                    errno.ENOSPC,
                    f"{self.label} store: writing {target} failed: no space left on the device "
                    f"of the local temporary {tmpdir}: {exc}",
                ) from None
            with self._errors("writing", target):
                self._fs().put_file(tmp, self._object(key))  # one upload: visible once complete

    def write_bytes(self, key: str, data: bytes) -> None:
        target = self.uri(key)
        with self._errors("writing", target):
            self._fs().pipe_file(self._object(key), data)

    def read_bytes(self, key: str) -> bytes:
        target = self.uri(key)
        with self._errors("reading", target):
            return self._fs().cat_file(self._object(key))

    def list(self, prefix: str, temporaries: bool = False) -> list[str]:
        # Writes upload from a local temporary: a bucket never holds one, so `temporaries` adds nothing.
        base = self._object(prefix) + "/"  # a file is not a prefix, and p/ never matches pp/
        strip = len(self._object(prefix)) - len(validate_key(prefix))
        try:
            with self._errors("listing", self.uri(prefix) + "/"):
                found = self._fs().find(base)
        except ObjectNotFoundError:
            return []
        return sorted(p[strip:] for p in found if p.startswith(base))

    def _listing_prefix(self, prefix: str) -> tuple[str, int]:
        """(the bucket-relative prefix of `prefix`'s objects, how many leading characters of a listed
        name are the store's own prefix)."""
        root = f"{self.prefix}/" if self.prefix else ""
        return f"{root}{validate_key(prefix)}/", len(root)

    @abstractmethod
    def _list_page(self, prefix: str, start_after: str, limit: int, delimiter: bool, token: str | None) -> dict:
        """One listing request: {"objects": [(name, version, modified)], "folders": [name], "next": token|None}."""

    def scan(
        self, prefix: str, start_after: str = "", limit: int = PAGE, moved_depth: int = 0
    ) -> tuple[builtins.list[ObjectInfo], bool]:
        if not 1 <= limit <= PAGE:
            raise ValueError(f"limit must be between 1 and {PAGE}, got {limit}")
        full, strip = self._listing_prefix(prefix)
        after = self.prefix + "/" + start_after if self.prefix and start_after else start_after
        with self._errors("listing", self.uri(prefix) + "/"):
            page = self._list_page(full, after, limit, False, None)
        objects = [ObjectInfo(name[strip:], version, modified) for name, version, modified in page["objects"]]
        return objects, page["next"] is not None

    def folders(self, prefix: str) -> builtins.list[str]:
        full, _ = self._listing_prefix(prefix)
        names, token = [], None
        with self._errors("listing", self.uri(prefix) + "/"):
            while True:
                page = self._list_page(full, "", PAGE, True, token)
                names += [f[len(full) :].rstrip("/") for f in page["folders"]]
                token = page["next"]
                if token is None:
                    return sorted(names)

    def delete(self, key: str) -> None:
        target = self.uri(key)
        try:
            with self._errors("deleting", target):
                self._fs().rm_file(self._object(key))
        except ObjectNotFoundError:
            return

    @contextmanager
    def local_copy(self, key: str) -> Iterator[str]:
        target = self.uri(key)
        with tempfile.TemporaryDirectory(prefix="geo-assets-") as tmpdir:
            tmp = os.path.join(tmpdir, validate_key(key).rsplit("/", 1)[-1])
            with self._errors("downloading", target):
                self._fs().get_file(self._object(key), tmp)
            yield tmp


@dataclass(frozen=True)
class S3Store(ObjectStore):
    """s3://bucket[/prefix] on AWS or any S3 API (endpoint_url). Without keys, the standard AWS
    credential chain (environment, profile, instance or pod role) applies to both clients."""

    scheme: ClassVar[str] = "s3"
    vsi: ClassVar[str] = "/vsis3/"
    label: ClassVar[str] = "S3"

    region: str | None = None
    access_key_id: str | None = field(default=None, repr=False)
    secret_access_key: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        if (self.access_key_id is None) != (self.secret_access_key is None):
            raise ValueError(f"storage root {self.root}: give both access_key_id and secret_access_key, or neither")
        if self.anonymous and self.access_key_id is not None:
            raise ValueError(f"storage root {self.root}: anonymous access takes no access keys")

    def _secrets(self) -> list[str]:
        return [s for s in (self.secret_access_key, self.access_key_id) if s]

    def _list_page(self, prefix, start_after, limit, delimiter, token):
        kwargs = {"Bucket": self.bucket, "Prefix": prefix, "MaxKeys": limit}
        if start_after:
            kwargs["StartAfter"] = start_after
        if delimiter:
            kwargs["Delimiter"] = "/"
        if token:
            kwargs["ContinuationToken"] = token
        page = self._fs().call_s3("list_objects_v2", **kwargs)
        # The ETag alone would not change when the same bytes are written again: every write is an
        # arrival. LastModified comes in whole seconds: the version arrived before that second's end.
        objects = [
            (
                o["Key"],
                f"{o['ETag'].strip(chr(34))}-{int(o['LastModified'].timestamp())}",
                o["LastModified"].timestamp() + (1.0 if o["LastModified"].microsecond == 0 else 0.0),
            )
            for o in page.get("Contents", [])
        ]
        folders = [p["Prefix"] for p in page.get("CommonPrefixes", [])]
        return {
            "objects": objects,
            "folders": folders,
            "next": page.get("NextContinuationToken") if page.get("IsTruncated") else None,
        }

    def _call(self, method: str, key: str, **kwargs) -> dict | None:
        """One request of boto's own client, for the conditional headers fsspec does not pass: None
        when its precondition fails (412, or 409 for a concurrent conditional write) or the object is
        missing; the body read whole."""
        from botocore.exceptions import ClientError
        from fsspec.asyn import sync

        fs = self._fs()

        async def call():
            await fs.set_session()
            client = await fs.get_s3(self.bucket)
            answer = await getattr(client, method)(Bucket=self.bucket, Key=self._object(key).split("/", 1)[1], **kwargs)
            if "Body" in answer:
                async with answer["Body"] as body:
                    answer["Body"] = await body.read()
            return answer

        try:
            with self._errors(f"{method} of", self.uri(key)):
                try:
                    return sync(fs.loop, call)
                except ClientError as exc:
                    error = exc.response.get("Error", {})
                    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
                    if status in (409, 412) or error.get("Code") in (
                        "NoSuchKey",
                        "PreconditionFailed",
                        "ConditionalRequestConflict",
                    ):
                        return None
                    raise
        except ObjectNotFoundError:
            return None

    def create(self, key: str, data: bytes) -> bool:
        return self._call("put_object", key, Body=data, IfNoneMatch="*") is not None

    def read_versioned(self, key: str) -> tuple[bytes, str] | None:
        answer = self._call("get_object", key)
        return None if answer is None else (answer["Body"], answer["ETag"])

    def replace(self, key: str, data: bytes, version: str) -> bool:
        return self._call("put_object", key, Body=data, IfMatch=version) is not None

    def _new_fs(self):
        import s3fs

        client_kwargs = {"region_name": self.region} if self.region else {}
        fs = s3fs.S3FileSystem(
            anon=self.anonymous,
            key=self.access_key_id,
            secret=self.secret_access_key,
            endpoint_url=self.endpoint_url,
            client_kwargs=client_kwargs,
            # Listings are never cached: other processes (runs, sensors) write to the same bucket.
            use_listings_cache=False,
            # One retry policy, botocore's, whose every retry geo/retries.py counts and the store logs:
            # s3fs's own loop (5 tries around botocore's, uncounted) is set to one try.
            session=retries.s3_session(),
            config_kwargs=retries.s3_config(),
        )
        fs.retries = 1
        return fs

    def _session(self):
        from rasterio.session import AWSSession

        endpoint = None
        if self.endpoint_url:
            endpoint = urlparse(self.endpoint_url).netloc  # GDAL's AWS_S3_ENDPOINT is host:port
        if self.anonymous:
            return AWSSession(aws_unsigned=True, region_name=self.region, endpoint_url=endpoint)
        # rasterio refuses AWS_* credential options in Env(); a session is its way to pass them.
        return AWSSession(
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
            region_name=self.region,
            endpoint_url=endpoint,
        )

    def env(self) -> AbstractContextManager:
        import rasterio

        options = self._gdal_options()
        if self.endpoint_url:
            options["AWS_HTTPS"] = "YES" if urlparse(self.endpoint_url).scheme == "https" else "NO"
            options["AWS_VIRTUAL_HOSTING"] = "FALSE"  # path-style URLs: emulators have no bucket DNS
        return rasterio.Env(session=self._cached("session", self._session), **options)


@dataclass(frozen=True)
class GCSStore(ObjectStore):
    """gs://bucket[/prefix] on Google Cloud Storage or an emulator (endpoint_url). Credentials come
    from the standard chain (GOOGLE_APPLICATION_CREDENTIALS, gcloud, the metadata server), or none
    when anonymous."""

    scheme: ClassVar[str] = "gs"
    vsi: ClassVar[str] = "/vsigs/"
    label: ClassVar[str] = "GCS"

    project: str | None = None

    def _list_page(self, prefix, start_after, limit, delimiter, token):
        from datetime import datetime

        params: dict[str, Any] = {"prefix": prefix, "maxResults": limit + 1 if start_after else limit}
        if start_after:
            params["startOffset"] = start_after  # inclusive, unlike S3's StartAfter: one more, then drop it
        if delimiter:
            params["delimiter"] = "/"
        if token:
            params["pageToken"] = token
        page = self._fs().call("GET", "b/{}/o", self.bucket, json_out=True, **params)
        after = [i for i in page.get("items", []) if i["name"] > start_after]
        objects = [
            (
                i["name"],
                str(i["generation"]),
                datetime.fromisoformat(i["timeCreated"].replace("Z", "+00:00")).timestamp(),
            )
            for i in after[:limit]
        ]
        more = page.get("nextPageToken") or ("more" if len(after) > limit else None)
        return {"objects": objects, "folders": page.get("prefixes", []), "next": more}

    def _new_fs(self):
        retries.count_gcs_retries()
        kwargs: dict[str, Any] = {"use_listings_cache": False, "requests_timeout": retries.gcs_timeout()}
        if self.project:
            kwargs["project"] = self.project
        if self.anonymous:
            kwargs["token"] = "anon"
        if self.endpoint_url:
            # gcsfs's experimental zonal/HNS layer asks a storage-control API that emulators lack
            # and stalls 60 s per call; the variable is read when gcsfs is imported, so set it
            # first, and take the plain class in case gcsfs was imported earlier without it.
            os.environ["GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT"] = "false"
            from gcsfs.core import GCSFileSystem

            return GCSFileSystem(endpoint_url=self.endpoint_url, **kwargs)
        import gcsfs

        return gcsfs.GCSFileSystem(**kwargs)

    def _upload(self, key: str, data: bytes, generation: str) -> bool:
        """Write only if the object's generation is `generation` ("0": no object); False if not."""
        fs = self._fs()
        name = self._object(key).split("/", 1)[1]
        try:
            with self._errors("writing", self.uri(key)):
                # A multipart upload (metadata, then the bytes), as gcsfs sends its own, with the condition.
                body = (
                    (
                        f"--==0==\nContent-Type: application/json; charset=UTF-8\n\n{json.dumps({'name': name})}\n"
                        "--==0==\nContent-Type: application/json\n\n"
                    ).encode()
                    + data
                    + b"\n--==0==--"
                )
                try:
                    fs.call(
                        "POST",
                        f"{fs._location}/upload/storage/v1/b/{self.bucket}/o",
                        uploadType="multipart",
                        ifGenerationMatch=generation,
                        data=body,
                        headers={"Content-Type": 'multipart/related; boundary="==0=="'},
                        json_out=True,
                    )
                except FileExistsError:  # gcsfs's word for 412: the precondition failed
                    return False
        except ObjectNotFoundError:
            return False
        return True

    def create(self, key: str, data: bytes) -> bool:
        return self._upload(key, data, "0")

    def read_versioned(self, key: str) -> tuple[bytes, str] | None:
        fs = self._fs()
        try:
            with self._errors("reading", self.uri(key)):
                headers, data = fs.call(
                    "GET", "b/{}/o/{}", self.bucket, self._object(key).split("/", 1)[1], alt="media"
                )
        except ObjectNotFoundError:
            return None
        return data, headers["x-goog-generation"]

    def replace(self, key: str, data: bytes, version: str) -> bool:
        return self._upload(key, data, version)

    def env(self) -> AbstractContextManager:
        import rasterio

        options = self._gdal_options()
        if self.endpoint_url:
            options["CPL_GS_ENDPOINT"] = self.endpoint_url.rstrip("/") + "/"
        if self.anonymous:
            options["GS_NO_SIGN_REQUEST"] = "YES"
        return rasterio.Env(**options)


def make_store(
    root: str,
    *,
    endpoint_url: str | None = None,
    region: str | None = None,
    access_key_id: str | None = None,
    secret_access_key: str | None = None,
    anonymous: bool = False,
    project: str | None = None,
) -> Store:
    """The store for `root`'s scheme, with the connection settings that apply to it."""
    cls = _store_class(root)
    given = {
        "endpoint_url": endpoint_url,
        "region": region,
        "access_key_id": access_key_id,
        "secret_access_key": secret_access_key,
        "anonymous": anonymous or None,
        "project": project,
    }
    given = {k: v for k, v in given.items() if v is not None}
    accepted = {f.name for f in fields(cls)} - {"root"}
    extra = sorted(set(given) - accepted)
    if extra:  # names only: the values may be secrets
        scheme = urlparse(root).scheme
        raise ValueError(f"storage root {root}: {', '.join(extra)} not accepted for {scheme}:// roots")
    return cls(root, **given)


def local_root(path: str | os.PathLike) -> str:
    return Path(path).resolve().as_uri()
