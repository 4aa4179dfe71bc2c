"""Requests to an object store that failed and were retried: told to the operation, counted per process.

The S3 client under s3fs (botocore, standard retry mode) retries a throttled, failed or timed-out
request itself, with exponential backoff, and says nothing; so do gcsfs and GDAL (raster reads), but
for a line of their loggers (counted at the end of this module). Two of botocore's events tell us, per request:
`needs-retry` after every attempt (we note why a failed one failed) and `request-created` before
every attempt (one after the first is a retry, for the noted cause). They are registered on one
session per process, which every S3 client of the store is made from.

Each store operation collects its own retries (`collecting()`): a context variable, which asyncio
copies into fsspec's event loop thread with the request, so concurrent operations of a thread pool
never see each other's. The store logs them once the operation ends (geo/store.py); `totals()` counts
every retry of the process, for a step's summary (resources/storage.py).
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TypeVar

__all__ = [
    "GCS_ATTEMPTS",
    "GDAL_ATTEMPTS",
    "GDAL_LOGGERS",
    "S3_ATTEMPTS",
    "collecting",
    "count_gcs_retries",
    "count_gdal_retries",
    "gcs_timeout",
    "describe",
    "read",
    "record",
    "s3_config",
    "s3_session",
    "totals",
]

# Attempts of one request, the first included. Every retry of an S3 request is botocore's (s3fs's own
# retry loop is set to one try), so this is the store's whole retry policy, and every retry is counted.
S3_ATTEMPTS = 5

log = logging.getLogger(__name__)
T = TypeVar("T")

_current: ContextVar[list[str] | None] = ContextVar("geo_assets_store_retries", default=None)
_lock = threading.Lock()
_totals: Counter[str] = Counter()  # cause -> retries in this process
_CAUSE = "geo_assets_failed_because"  # a request context's key: why its last attempt failed
_sessions: dict[int, object] = {}  # pid -> the S3 session (an event loop's clients are not fork-safe)


@contextmanager
def collecting() -> Iterator[list[str]]:
    """Collect the causes of the retries of the store requests made in this block."""
    causes: list[str] = []
    outer = _current.get()
    token = _current.set(causes)
    try:
        yield causes
    finally:
        _current.reset(token)
        if outer is not None:  # an operation within another: the outer one's retries include its
            outer.extend(causes)


# GDAL's words for a request that failed for the store's sake (an answer of 429 or 5xx, or none): after its
# retries, the store's fault. A 403 or 404 after retries is the object's (removed, a signed URL expired).
_REQUEST_FAILED = re.compile(r"HTTP response code(?: on \S+)?: ?(429|5\d\d)\b|CURL error", re.IGNORECASE)


def read(
    name: str, errors: type[Exception], fail: Callable[[Exception, list[str]], BaseException], op: Callable[[], T]
) -> T:
    """`op()`, a read of `name` through GDAL, with its retries collected and said in one line when it
    succeeded after some. A failure of type `errors` is raised as `fail(exc, retries)`: with retries, the
    store failed; without, the object (missing, denied, corrupt). A failure after retries that names no
    failed request ("not recognized", a TIFF error) is read once more to tell which: GDAL says so both of
    an object it could not fetch whole and of corrupt bytes fetched after a retry, so only a second
    attempt with no retry blames the object. One that names a failed request is not read again, so a
    store that is down fails in the time of one read's retries."""
    retried: list[str] = []
    for second in (False, True):
        with collecting() as causes:
            try:
                result = op()
            except errors as exc:
                retried += causes
                if second or not causes or _REQUEST_FAILED.search(str(exc)):
                    raise fail(exc, retried if causes else []) from None
                continue
        retried += causes
        if retried:  # succeeded, after GDAL's retries: said, never silent
            log.warning("reading %s: succeeded after retries: %s", name, describe(retried))
        return result
    raise AssertionError("unreachable: the second attempt returns or raises")


def record(cause: str) -> None:
    with _lock:
        _totals[cause] += 1
    causes = _current.get()
    if causes is not None:
        causes.append(cause)


def totals() -> Counter[str]:
    """Every retry of this process so far, by cause."""
    with _lock:
        return Counter(_totals)


def describe(causes: Counter[str] | list[str]) -> str:
    """`3 (HTTP 503 SlowDown x2, ReadTimeoutError x1)`."""
    counted = Counter(causes) if isinstance(causes, list) else causes
    parts = ", ".join(f"{cause} x{n}" for cause, n in sorted(counted.items()))
    return f"{sum(counted.values())} ({parts})"


# -- botocore's events


def _note_failure(response=None, caught_exception=None, request_dict=None, **_) -> None:
    if caught_exception is not None:
        cause = type(caught_exception).__name__
    elif response is not None and (response[0].status_code >= 500 or response[0].status_code == 429):
        code = (response[1] or {}).get("Error", {}).get("Code", "")
        cause = f"HTTP {response[0].status_code} {code}".rstrip()
    else:
        return None
    if request_dict is not None:
        request_dict["context"][_CAUSE] = cause
    return None  # observe only: botocore's own handler decides whether to retry


def _count_retry(request=None, **_) -> None:
    context = getattr(request, "context", None) or {}
    if context.get("retries", {}).get("attempt", 1) > 1:
        record(context.pop(_CAUSE, "unknown failure"))


def _no_expect_continue(params=None, **_) -> None:
    """Uploads go without `Expect: 100-continue`: aiohttp waits for the server's "100 Continue" with no
    timeout, so a server that stalls there hangs the upload for good; with the body sent at once, the
    read timeout ends the attempt, and botocore retries it."""
    if params is not None:
        params.get("headers", {}).pop("Expect", None)


def s3_session():
    """This process's aiobotocore session, with our handlers of its events registered."""
    pid = os.getpid()
    with _lock:
        if pid not in _sessions:
            from aiobotocore.session import AioSession

            session = AioSession()
            session.register("needs-retry.s3", _note_failure, unique_id="geo-assets-note-failure")
            session.register("request-created.s3", _count_retry, unique_id="geo-assets-count-retry")
            # Last: after botocore's own handler of the event, which adds the header to every upload.
            session.get_component("event_emitter").register_last(
                "before-call.s3", _no_expect_continue, unique_id="geo-assets-no-expect-continue"
            )
            _sessions[pid] = session
        return _sessions[pid]


def s3_config() -> dict:
    """botocore's retry settings of the store's S3 clients (s3fs's `config_kwargs`)."""
    return {"retries": {"mode": "standard", "total_max_attempts": S3_ATTEMPTS}}


# -- gcsfs's retries

# gcsfs retries a failed request itself (6 attempts, exponential backoff) and tells no one but a debug
# line of its logger, `<call> retrying after exception: <error>`; it has no hook. So a filter on that
# logger counts those lines, and lets through only what the logger's level let through before. Its child
# loggers, which would now inherit the lower level, keep the one they had.
_GCSFS_RETRY = " retrying after exception: "
_GCSFS_CHILDREN = ("gcsfs.credentials", "gcsfs.zonal_file", "gcsfs.gcsfuse")
GCS_ATTEMPTS = 6  # gcsfs.retry.retry_request's default, which the store keeps


class _GcsfsRetries(logging.Filter):
    def __init__(self, shown: int) -> None:
        super().__init__()
        self.shown = shown  # the level gcsfs's lines were shown from

    def filter(self, line: logging.LogRecord) -> bool:
        if isinstance(line.msg, str) and _GCSFS_RETRY in line.msg:  # an f-string: no args to format
            record(_gcs_cause(line.msg.split(_GCSFS_RETRY, 1)[1]))
        return line.levelno >= self.shown


def _gcs_cause(error: str) -> str:
    """`HTTP 503` for gcsfs's HttpError (its text ends with the status), else the error's first words."""
    status = error.rsplit(", ", 1)[-1].strip()
    if status.isdigit():
        return f"HTTP {status}"
    first = (error.strip().splitlines() or ["unknown failure"])[0]
    return first.split(" [", 1)[0].removesuffix(" ssl:default")[:80]  # aiohttp's: `... ssl:default [<OS error>]`


def gcs_timeout():
    """gcsfs's per-request timeout: none by default, so a stalled request hung its step for good (an upload
    stalled in the fault suite for 10 minutes). The S3 client's, s3fs's defaults: 5 s to connect, 15 s
    without a byte from the server; a timed-out attempt is retried like a failed one."""
    import aiohttp  # gcsfs's HTTP client

    return aiohttp.ClientTimeout(sock_connect=5, sock_read=15)


def count_gcs_retries() -> None:
    """Count gcsfs's retries from here on (once per process)."""
    logger = logging.getLogger("gcsfs")
    with _lock:
        if any(isinstance(f, _GcsfsRetries) for f in logger.filters):
            return
        shown = logger.getEffectiveLevel()
        for name in _GCSFS_CHILDREN:
            child = logging.getLogger(name)
            if child.level == logging.NOTSET:
                child.setLevel(shown)
        logger.addFilter(_GcsfsRetries(shown))
        logger.setLevel(logging.DEBUG)


# -- GDAL's retries (raster reads through /vsis3/, /vsigs/, /vsicurl/)

# GDAL retries a failed HTTP request itself (GDAL_HTTP_MAX_RETRY, exponential backoff) and tells only its
# error handler, with a warning that rasterio logs in the reading thread, on `rasterio._env` when a dataset
# opens and on `rasterio._err` when it reads: `... HTTP error code: 503 - <url>. Retrying again in 0.5 secs`
# (code 0: no answer, a reset or a timeout). A filter counts those lines and drops them: the reads that
# retried say so themselves, counted (geo/cog.py, geo/stac/reads.py), and the line's URL would carry a signed
# href's token into the step's stderr.
_GDAL_RETRY = re.compile(r"HTTP error code: (\d+) - .*Retrying again in ")
GDAL_LOGGERS = ("rasterio._env", "rasterio._err")  # where rasterio logs what GDAL says
GDAL_ATTEMPTS = 4  # GDAL_HTTP_MAX_RETRY=3 of the store's raster reads (geo/store.py), the first attempt included


class _GdalRetries(logging.Filter):
    def __init__(self) -> None:
        super().__init__()
        self.shown = logging.NOTSET  # the level the logger showed lines from, where we lowered it

    def filter(self, line: logging.LogRecord) -> bool:
        found = _GDAL_RETRY.search(line.getMessage()) if line.levelno == logging.WARNING else None
        if found is None:
            return line.levelno >= self.shown
        code = found.group(1)
        record("no answer (reset or timeout)" if code == "0" else f"HTTP {code}")
        return False


def count_gdal_retries() -> None:
    """Count GDAL's retries from here on; called before raster reads. As for gcsfs: a logger set above
    WARNING (by a deployment's logging, at any time) would never make the retry lines, so it is lowered to
    WARNING and its filter lets through only what the level it had showed."""
    with _lock:
        for name in GDAL_LOGGERS:
            logger = logging.getLogger(name)
            mine = next((f for f in logger.filters if isinstance(f, _GdalRetries)), None)
            if mine is None:
                mine = _GdalRetries()
                logger.addFilter(mine)
            if logger.getEffectiveLevel() > logging.WARNING:
                mine.shown = logger.getEffectiveLevel()
                logger.setLevel(logging.WARNING)
