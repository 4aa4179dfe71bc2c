"""Tile work in batches, run alike in a step's process or on a Dask worker.

A batch carries small things only: manifest entries or grid tiles, and a work object holding a store
and keys. The work reads and writes the store itself, so rasters never travel through a scheduler,
and a batch returns manifest entries. `run_batch` is what a compute backend runs per batch:

- it times the work (after the work's one-off `warm()`, e.g. loading a model), so the backend can
  size batches from what tiles really cost;
- it captures the records of the `geo_assets` loggers emitted while the batch runs, in its own thread
  and in the threads of the mapper it hands the work, and returns them with the result: the step
  replays them into its Dagster log (Dask does not forward worker logs, and a record that rides with
  its batch arrives whole, in order, and exactly once, even when the batch fails);
- a failure is returned, not raised, with the failing tile's key and the traceback formatted where it
  happened;
- on success it writes a completion record (`engine.ledger`), so a re-execution skips the batch's tiles.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import socket
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from geo_assets.engine.ledger import TileLedger

__all__ = [
    "BatchOutcome",
    "Each",
    "Mapper",
    "capturing",
    "fingerprint",
    "item_key",
    "noop",
    "origin",
    "run_batch",
    "serial_map",
]

LOGGER = "geo_assets"  # records of this logger and its children are forwarded to the step's log
Mapper = Callable[[Callable, Sequence], list]


def serial_map(fn: Callable, items: Sequence) -> list:
    return [fn(item) for item in items]


def noop() -> None:
    """An empty task: its round trip is a backend's fixed cost per batch."""


def item_key(item: Any) -> str | None:
    """The tile key of a work item: a manifest entry, a grid tile, or a tuple that starts with one."""
    if isinstance(item, dict):
        return item.get("key")
    if isinstance(item, tuple) and item:
        return item_key(item[0])
    return getattr(item, "key", None)


def fingerprint(item: Any) -> str:
    """A digest of a work item's content (a manifest entry carries its pixels' digest; a tile its bounds):
    a completion record counts only for the same input."""
    value = dataclasses.asdict(item) if dataclasses.is_dataclass(item) and not isinstance(item, type) else item
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Each:
    """A per-tile work function as batch work: `fn(item)` for every item, over the mapper given."""

    fn: Callable
    min_items = 1

    def __call__(self, items: Sequence, mapper: Mapper) -> list:
        return mapper(self.fn, items)


# --- log capture ---------------------------------------------------------------------------------

_buffers: dict[int | None, list] = {}  # thread id -> the list of records of the batch that thread works for
_install_lock = threading.Lock()


class _Forward(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        buffer = _buffers.get(record.thread)
        if buffer is None:
            return
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + "".join(traceback.format_exception(*record.exc_info)).rstrip()
        buffer.append({"level": record.levelno, "logger": record.name, "message": message})


def _install() -> None:
    with _install_lock:
        logger = logging.getLogger(LOGGER)
        if any(isinstance(h, _Forward) for h in logger.handlers):
            return
        if logger.level == logging.NOTSET:  # else INFO would stop at the root's WARNING
            logger.setLevel(logging.INFO)
        logger.addHandler(_Forward(logging.INFO))


@contextmanager
def capturing(buffer: list) -> Iterator[None]:
    """Collect this thread's `geo_assets` records into `buffer` while the block runs."""
    _install()
    ident = threading.get_ident()
    previous = _buffers.get(ident)
    _buffers[ident] = buffer
    try:
        yield
    finally:
        if previous is None:
            _buffers.pop(ident, None)
        else:
            _buffers[ident] = previous


@dataclass(frozen=True)
class _Tracked:
    """One tile's call inside a batch: its records go to the batch, its failure names its tile."""

    fn: Callable
    buffer: list

    def __call__(self, item: Any) -> Any:
        with capturing(self.buffer):
            try:
                return self.fn(item)
            except Exception as exc:
                if getattr(exc, "tile_key", None) is None:
                    exc.tile_key = item_key(item)  # type: ignore[attr-defined]  # tagged for whoever reports it
                raise


# --- one batch -----------------------------------------------------------------------------------


def origin() -> str:
    """Where a batch ran: the Dask worker's address, else host and process."""
    try:
        from distributed import get_worker

        return get_worker().address
    except (ImportError, ValueError):
        return f"{socket.gethostname()} pid {os.getpid()}"


@dataclass
class BatchOutcome:
    index: int
    keys: list[str]
    origin: str
    results: list[dict] | None = None
    logs: list[dict] = field(default_factory=list)
    error: dict | None = None  # {"key", "type", "message", "traceback"}
    seconds: float = 0.0  # the work itself, after warm-up
    fixed: float = 0.0  # the rest of the batch: capture, the completion record


def run_batch(
    work: Callable[[Sequence, Mapper], list],
    items: Sequence,
    keys: list[str],
    digests: list[str],
    ledger: TileLedger | None,
    index: int,
    mapper: Mapper = serial_map,
) -> BatchOutcome:
    outcome = BatchOutcome(index, keys, origin())
    begin = time.perf_counter()
    with capturing(outcome.logs):
        try:
            if hasattr(work, "warm"):
                work.warm()
            warmed = time.perf_counter()
            buffer = outcome.logs
            results = work(items, lambda fn, xs: mapper(_Tracked(fn, buffer), xs))
            outcome.seconds = time.perf_counter() - warmed
            if len(results) != len(items):
                raise RuntimeError(f"work returned {len(results)} results for {len(items)} tiles")
            if ledger is not None:
                ledger.record(keys, digests, results)
            outcome.results = list(results)
            outcome.fixed = time.perf_counter() - begin - outcome.seconds - (warmed - begin)
        except Exception as exc:
            outcome.error = {
                "key": getattr(exc, "tile_key", None),
                "type": type(exc).__name__,
                "message": str(exc),
                "traceback": "".join(traceback.format_exception(exc)).rstrip(),
            }
    return outcome
