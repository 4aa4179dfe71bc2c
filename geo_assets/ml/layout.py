"""How the tile loop uses the machine: batch size, inference streams, intra-op threads, I/O threads.

Bigger batches are not faster on CPUs: on 2 cores the demo U-Net at batch 16 costs about twice the
CPU per tile of batch 1 (its activations stop fitting in cache), and two streams of one thread
each beat one stream of two threads (no synchronisation inside each operator). Which layout wins
depends on the model, the runtime and the machine, so on the CPU it is measured: forward passes
alone over a real tile, first each split of the cores into streams x threads at the smallest
batch, then larger batches on the best split while they are faster. A candidate must be 5% faster
than the simpler one to win (noise on a shared machine). The result is cached per (model digest,
runtime, tile shape, machine) in `$GEO_ASSETS_CACHE_DIR/layouts.json` (default
`~/.cache/geo-assets`), so a machine measures a model once. On a GPU: one stream, batch 16.

When other processes crowd the cores (the first streams got under 80% of their cores' time), wall
time measures them rather than the layouts: the loop then runs one single-threaded stream per
core at the batch with the least CPU per tile, kept for this process only (another run measures
again).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from geo_assets.ml.device import cores
from geo_assets.ml.memory import MAX_FORWARD_PIXELS, max_forward_batch
from geo_assets.ml.options import MAX_BATCH
from geo_assets.ml.predict import classify
from geo_assets.ml.runtime import Runtime
from geo_assets.settings import by_name

CPU_BATCHES = (1, 2, 4, 8)  # tried in order while each is faster; 16 was slower everywhere we measured
GPU_BATCH = 16
MIN_SECONDS = 0.2  # each candidate runs at least this long, and two batches per stream
BETTER = 1.05  # a candidate replaces the simpler one only when this much faster
BUSY = 0.8  # below this share of their cores, streams were crowded out by other processes
CACHE_ENV = "GEO_ASSETS_CACHE_DIR"

_lock = threading.Lock()
_memory: dict[str, dict] = {}


@dataclass(frozen=True)
class Layout:
    batch_size: int
    streams: int  # batches in inference at once, each on its own thread
    threads: int | None  # intra-op threads per stream; None: the runtime's default
    io_threads: int  # tile reads and writes
    how: str = "given"  # measured | cached | default | given
    tiles_per_s: float | None = None  # forward passes alone at this layout, when measured

    def __post_init__(self) -> None:
        check_batch_size(self.batch_size)
        for name in ("streams", "io_threads") + (("threads",) if self.threads is not None else ()):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 256:
                raise ValueError(f"layout {name} must be an integer between 1 and 256, got {value!r}")

    def metadata(self) -> dict:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

    def __str__(self) -> str:
        threads = "default" if self.threads is None else self.threads
        rate = f", {self.tiles_per_s:.1f} tiles/s forward" if self.tiles_per_s else ""
        return (
            f"batch {self.batch_size}, {self.streams} stream(s) x {threads} intra-op thread(s), "
            f"{self.io_threads} I/O threads ({self.how}{rate})"
        )


def check_batch_size(value: object) -> int | None:
    """None or "auto": measured; else an integer between 1 and MAX_BATCH."""
    if value is None or value == "auto":
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 1 <= value <= MAX_BATCH:
        raise ValueError(f"batch_size must be an integer between 1 and {MAX_BATCH}, or auto (measured), got {value!r}")
    return int(value)


def thread_splits(n: int) -> list[tuple[int, int]]:
    """(streams, threads) candidates for n cores: one stream per core, all cores in one stream, and halves."""
    splits = {(n, 1), (1, n)} | ({(n // 2, 2)} if n >= 4 else set())
    return sorted(splits, reverse=True)


def io_threads(streams: int) -> int:
    # Reads and writes cost ~1/4 of a forward pass locally (BENCHMARKS.md); two per stream also
    # cover object-store latency, and the pipeline's depth bounds what they hold.
    return 2 * streams


def choose_layout(
    runtime: Runtime, sample: np.ndarray, batch_size: int | str | None = None, cpus: int | None = None
) -> Layout:
    """The layout for `runtime` on tiles shaped like `sample` (C,H,W): measured once per machine on the CPU.

    `cpus`: the cores this loop may use (default: all this process may run on); a process that
    shares the machine with other workers passes its share.
    """
    batch = check_batch_size(batch_size)
    most = max_forward_batch(max(sample.shape[-2:]))  # memory: batch x window² within MAX_FORWARD_PIXELS
    if batch is not None and batch > most or most == 0:
        raise ValueError(
            f"batch_size {batch or 1} of {sample.shape[-1]} px windows passes the forward pass's bound of "
            f"{MAX_FORWARD_PIXELS:,} pixels (batch x window²): at most {most} fit"
        )
    if runtime.device.type != "cpu":
        return Layout(batch or min(GPU_BATCH, most), 1, None, io_threads(2), "default")
    n = cores() if cpus is None else cpus
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 256:
        raise ValueError(f"cpus must be an integer between 1 and 256, got {n!r}")
    key = _key(runtime, sample.shape, batch, n)
    cached = _cache_get(key)
    if cached is not None and cached["batch_size"] <= most:  # measured before the bound: measured again
        return Layout(**{**cached, "how": "cached" if cached["how"] == "measured" else cached["how"]})
    layout = _measure_layouts(runtime, sample, batch, n)
    # A busy machine's choice is kept for this process only: the next process measures again.
    _cache_put(key, layout, persist=layout.how == "measured")
    return layout


@dataclass(frozen=True)
class Rate:
    tiles_per_s: float  # wall-clock throughput of the streams together
    cpu_ms_per_tile: float  # process CPU time per tile, all threads
    busy: float  # CPU time over wall time x threads: ~1 when the streams had their cores to themselves


def measure(runtime: Runtime, sample: np.ndarray, streams: int, threads: int, batch: int) -> Rate:
    """Forward passes alone, with `streams` threads each inferring batches of `batch` copies of `sample`."""
    x = np.repeat(np.asarray(sample, dtype=np.float32)[np.newaxis], batch, axis=0)
    with runtime.session(threads) as forward, ThreadPoolExecutor(streams) as pool:
        list(
            pool.map(lambda _: classify(forward, x, runtime.multiple), range(streams))
        )  # warm-up: allocations, kernels

        def stream(start: float) -> int:
            done = 0
            while done < 2 or time.perf_counter() - start < MIN_SECONDS:
                classify(forward, x, runtime.multiple)
                done += 1
            return done * batch

        cpu, start = time.process_time(), time.perf_counter()
        tiles = sum(pool.map(stream, [start] * streams))
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    return Rate(tiles / wall, 1000 * cpu / tiles, cpu / (wall * streams * threads))


def batches_to_try(window: int) -> tuple[int, ...]:
    """CPU_BATCHES within the forward pass's memory bound for windows of `window` px."""
    return tuple(b for b in CPU_BATCHES if b <= max_forward_batch(window))


def _measure_layouts(runtime: Runtime, sample: np.ndarray, batch: int | None, n: int) -> Layout:
    splits = thread_splits(n)  # simplest first: one single-threaded stream per core
    first = batch or CPU_BATCHES[0]
    rates = {(s, t, first): measure(runtime, sample, s, t, first) for s, t in splits[:1]}
    if rates[(n, 1, first)].busy < BUSY:
        # Other processes took the cores: wall time measures them, not us. One single-threaded
        # stream per core is then the safe choice, at the batch that costs the least CPU per tile.
        return _by_cpu(runtime, sample, batch, n, rates[(n, 1, first)])
    rates.update({(s, t, first): measure(runtime, sample, s, t, first) for s, t in splits[1:]})
    best = _fastest(rates)
    if batch is None:
        streams, threads, _ = best
        for b in batches_to_try(max(sample.shape[-2:]))[1:]:
            rates[(streams, threads, b)] = measure(runtime, sample, streams, threads, b)
            if _fastest(rates) == best:
                break  # not faster: larger batches will not be either
            best = _fastest(rates)
    streams, threads, b = best
    return Layout(b, streams, threads, io_threads(streams), "measured", round(rates[best].tiles_per_s, 2))


def _fastest(rates: dict[tuple, Rate]) -> tuple:
    """The fastest candidate; a later (less simple) one must beat the earlier best by BETTER."""
    best: tuple | None = None
    for key, rate in rates.items():
        if best is None or rate.tiles_per_s > rates[best].tiles_per_s * BETTER:
            best = key
    assert best is not None  # rates holds at least one candidate
    return best


def _by_cpu(runtime: Runtime, sample: np.ndarray, batch: int | None, n: int, first: Rate) -> Layout:
    best, cost = batch or CPU_BATCHES[0], first.cpu_ms_per_tile
    if batch is None:
        for b in batches_to_try(max(sample.shape[-2:]))[1:]:
            r = measure(runtime, sample, n, 1, b)
            if r.cpu_ms_per_tile * BETTER >= cost:
                break
            best, cost = b, r.cpu_ms_per_tile
    return Layout(best, n, 1, io_threads(n), "busy machine: by CPU time")


# --------------------------------------------------------------------------------------------------
# The cache: one JSON file of measured layouts per machine, written atomically.


def cache_path() -> Path:
    root = by_name(CACHE_ENV).get() or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "geo-assets"
    )
    return Path(root) / "layouts.json"


def _machine() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        model = ""
    return model or os.uname().machine


def _key(runtime: Runtime, shape: tuple, batch: int | None, n: int) -> str:
    import torch

    versions = {"torch": torch.__version__}
    if runtime.name == "onnxruntime":
        import onnxruntime

        versions["onnxruntime"] = onnxruntime.__version__
    facts = [runtime.name, runtime.digest, list(shape), batch, n, _machine(), versions]
    return hashlib.sha256(json.dumps(facts).encode()).hexdigest()[:24]


def _read_cache(path: Path) -> dict:
    try:
        value = json.loads(path.read_text())
        return value if isinstance(value, dict) else {}
    except (OSError, ValueError):
        return {}  # missing or damaged: measure again and rewrite


def _cache_get(key: str) -> dict | None:
    with _lock:
        if key not in _memory:
            entry = _read_cache(cache_path()).get(key) or {}  # none: {} fails as a bad entry does
            try:
                Layout(**entry)  # only a well-formed entry counts
            except (TypeError, ValueError):
                return None
            _memory[key] = entry
        return _memory[key]


def _cache_put(key: str, layout: Layout, persist: bool = True) -> None:
    entry = dataclasses.asdict(layout)
    with _lock:
        _memory[key] = entry
        if not persist:
            return
        path = cache_path()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            entries = _read_cache(path)
            entries[key] = entry
            tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
            tmp.write_text(json.dumps(entries, indent=1, sort_keys=True))
            os.replace(tmp, path)  # other processes see the old file or the new one
        except OSError:
            pass  # a read-only home: the layout is kept in memory for this process
