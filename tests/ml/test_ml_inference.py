"""The pipelined tile loop: same outputs as a sequential loop, bounded memory, clear failures."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch

from geo_assets.geo.cog import write_cog
from geo_assets.geo.landcover import IGNORE
from geo_assets.geo.tiling import pixel_digest
from geo_assets.ml.inference import TileError, depth, predict_tiles, read_tile, write_prediction
from geo_assets.ml.layout import Layout
from geo_assets.ml.options import MAX_BATCH
from geo_assets.ml.predict import predict_batch
from geo_assets.ml.runtime import load_runtime

CPU = torch.device("cpu")
LAYOUTS = [
    Layout(1, 2, 1, 4),  # one tile at a time on two streams: the CPU's usual best
    Layout(5, 1, None, 1),  # a batch that does not divide the 12 tiles; one I/O thread
    Layout(4, 3, 1, 2),  # more streams than cores
]


def sequential(tiny, prefix: str) -> list[dict]:
    """The plain loop: read, predict (torch eager, in memory), write, one tile after the other."""
    out = []
    for entry in tiny.entries:
        image, valid, profile = read_tile(tiny.store, entry)
        classes = predict_batch(tiny.model, image[None], "cpu", valid=valid[None])[0]
        out.append(write_prediction(tiny.store, prefix, (entry, classes, profile)))
    return out


@pytest.fixture(scope="module")
def reference(tiny):
    return sequential(tiny, "predictions/sequential")


@pytest.mark.parametrize("layout", LAYOUTS, ids=str)
def test_pipelined_torch_identical_to_sequential(tiny, reference, layout):
    runtime = load_runtime(tiny.store, tiny.weights, CPU, "torch")
    prefix = f"predictions/torch-{layout.batch_size}-{layout.streams}"
    results = predict_tiles(tiny.store, runtime, CPU, tiny.entries, prefix, layout=layout)
    assert [r["key"] for r in results] == [e["key"] for e in tiny.entries]  # entries in input order
    assert [r["digest"] for r in results] == [r["digest"] for r in reference]
    assert [r["class_counts"] for r in results] == [r["class_counts"] for r in reference]
    np.testing.assert_array_equal(tiny.classes(results), tiny.classes(reference))
    assert tiny.classes(results)[0, 0, 0] == IGNORE  # the corner without data


def test_in_memory_module_and_measured_layout_identical(tiny, reference):
    # A plain nn.Module is run eagerly; the layout (batch size included) is measured here.
    seen = []
    results = predict_tiles(
        tiny.store, tiny.model, "cpu", tiny.entries, "predictions/module", "auto", on_layout=seen.append
    )
    assert [r["digest"] for r in results] == [r["digest"] for r in reference]
    assert len(seen) == 1 and seen[0].how == "measured"


@pytest.mark.parametrize("layout", LAYOUTS[:2], ids=str)
def test_onnxruntime_equals_eager_on_trained_model(tiny, reference, layout):
    runtime = load_runtime(tiny.store, tiny.weights, CPU, "onnxruntime")
    results = predict_tiles(
        tiny.store, runtime, CPU, tiny.entries, f"predictions/ort-{layout.batch_size}", layout=layout
    )
    ours, eager = tiny.classes(results), tiny.classes(reference)
    # The stated tolerance: at least 99.9% of pixels equal (on this model: all of them).
    assert np.mean(ours == eager) >= 0.999
    assert np.array_equal(ours == IGNORE, eager == IGNORE)  # no-data pixels never depend on the runtime
    assert [r["digest"] for r in results] == [pixel_digest(c) for c in ours]


def test_reads_run_ahead_but_in_flight_tiles_are_bounded(tiny):
    """Slow writes let reads run ahead: they must stop at the pipeline's depth, not read the region."""
    layout = Layout(1, 2, 1, 4)
    lock, held, peak = threading.Lock(), [0], [0]

    def mapper(fn, items):
        out = []
        for item in items:
            writing = isinstance(item, tuple)
            if writing:
                time.sleep(0.05)
            result = fn(item)
            with lock:
                held[0] += -1 if writing else 1  # tiles read and not yet written
                peak[0] = max(peak[0], held[0])
            out.append(result)
        return out

    runtime = load_runtime(tiny.store, tiny.weights, CPU, "torch")
    results = predict_tiles(tiny.store, runtime, CPU, tiny.entries, "predictions/bounded", mapper=mapper, layout=layout)
    assert len(results) == len(tiny.entries) and held[0] == 0
    bound = depth(layout) * layout.batch_size
    assert bound < len(tiny.entries)  # the bound is meaningful for this region
    assert 2 * layout.batch_size < peak[0] <= bound  # reads overlapped writes, and stopped at the bound


def _corrupt(tiny, index: int):
    """A copy of the region's entries whose tile `index` is a truncated COG."""
    entries = [dict(e) for e in tiny.entries]
    good = Path(tiny.store.path(entries[index]["path"])).read_bytes()
    key = f"imagery/corrupt/{entries[index]['key']}.tif"
    with tiny.store.writing(key) as tmp:
        Path(tmp).write_bytes(good[: len(good) // 3])
    entries[index]["path"] = key
    return entries


def test_a_failure_drops_queued_work_and_returns_once_running_work_has_finished(tiny):
    """The loop stops on a failed tile: reads, inferences and writes still queued are dropped, those
    running finish before the error reaches the caller, and none starts after."""
    layout = Layout(1, 2, 1, 1)  # one I/O thread: reads queue up behind it
    lock, started, running = threading.Lock(), [0], [0]

    def mapper(fn, items):
        out = []
        for item in items:
            with lock:
                started[0] += 1
                running[0] += 1
            try:
                time.sleep(0.05)
                out.append(fn(item))
            finally:
                with lock:
                    running[0] -= 1
        return out

    runtime = load_runtime(tiny.store, tiny.weights, CPU, "torch")
    with pytest.raises(TileError, match="tile 1_0"):
        predict_tiles(tiny.store, runtime, CPU, _corrupt(tiny, 1), "predictions/stopped", mapper=mapper, layout=layout)
    with lock:
        at_return = (started[0], running[0])
    time.sleep(1.0)  # long enough for a queued read or write to start, were any left
    assert at_return[1] == 0, "work was still running when the error reached the caller"
    assert started[0] == at_return[0], "work started after the loop had stopped"
    assert at_return[0] < 2 * len(tiny.entries)  # queued reads and writes were dropped, not run


@pytest.mark.parametrize("layout", [Layout(1, 1, 1, 1), Layout(2, 2, 1, 4)], ids=str)
def test_corrupt_tile_mid_run_fails_with_its_key(tiny, reference, layout):
    runtime = load_runtime(tiny.store, tiny.weights, CPU, "torch")
    prefix = f"predictions/corrupt-{layout.streams}"
    # A complete earlier run of the same outputs...
    predict_tiles(tiny.store, runtime, CPU, tiny.entries, prefix, layout=layout)
    tiles_dir = Path(tiny.store.path(prefix)) / "tiles"
    before = {p.name: p.read_bytes() for p in tiles_dir.iterdir()}
    # ...then a run that meets a truncated tile in the middle.
    entries = _corrupt(tiny, 6)
    with pytest.raises(TileError, match=r"tile 2_1: read failed: .*2_1\.tif"):
        predict_tiles(tiny.store, runtime, CPU, entries, prefix, layout=layout)
    after = sorted(tiles_dir.iterdir())
    assert [p.name for p in after] == sorted(before)  # no temporary or extra files
    for p in after:
        with rasterio.open(p) as src:  # every output whole and unchanged
            assert pixel_digest(src.read(1)) == next(r["digest"] for r in reference if f"{r['key']}.tif" == p.name)


def test_corrupt_tile_on_fresh_prefix_writes_nothing_for_it(tiny):
    layout = Layout(1, 1, 1, 1)
    runtime = load_runtime(tiny.store, tiny.weights, CPU, "torch")
    prefix = "predictions/corrupt-fresh"
    with pytest.raises(TileError, match="tile 2_1"):
        predict_tiles(tiny.store, runtime, CPU, _corrupt(tiny, 6), prefix, layout=layout)
    written = {p.name for p in (Path(tiny.store.path(prefix)) / "tiles").iterdir()}
    assert "2_1.tif" not in written
    assert not [n for n in written if n.startswith(".tmp")]
    # Tiles after the failed one are written only within the pipeline's depth, never the rest.
    assert len(written) <= 6 + depth(layout) * layout.batch_size


def test_tiles_of_different_shapes_in_one_batch_are_refused(tiny):
    odd = "imagery/odd/odd.tif"
    with rasterio.open(tiny.store.path(tiny.entries[0]["path"])) as src:
        data, crs, transform = src.read()[:, :32, :], src.crs.to_string(), src.transform
    with tiny.store.writing(odd) as tmp:
        write_cog(tmp, data, crs, transform, 0)
    entries = tiny.entries[:2] + [{"key": "odd", "path": odd}]
    runtime = load_runtime(tiny.store, tiny.weights, CPU, "torch")
    with pytest.raises(TileError, match=r"differ in shape"):
        predict_tiles(tiny.store, runtime, CPU, entries, "predictions/odd", layout=Layout(3, 1, 1, 1))


def test_inference_failure_names_the_tile(tiny):
    three = "imagery/three-bands/three.tif"
    with rasterio.open(tiny.store.path(tiny.entries[0]["path"])) as src:
        data, crs, transform = src.read()[:3], src.crs.to_string(), src.transform
    with tiny.store.writing(three) as tmp:
        write_cog(tmp, data, crs, transform, 0)
    runtime = load_runtime(tiny.store, tiny.weights, CPU, "onnxruntime")
    with pytest.raises(TileError, match=r"tile\(s\) three: inference failed: .*3 channels but the model expects 4"):
        predict_tiles(
            tiny.store, runtime, CPU, [{"key": "three", "path": three}], "predictions/three", layout=Layout(1, 1, 1, 1)
        )
    assert not tiny.store.list("predictions/three")


@pytest.mark.parametrize("bad", [0, -1, MAX_BATCH + 1, 1.5, True, "big", float("nan"), float("inf")])
def test_batch_size_out_of_bounds_is_refused(tiny, bad):
    with pytest.raises(ValueError, match=f"batch_size must be an integer between 1 and {MAX_BATCH}"):
        predict_tiles(tiny.store, tiny.model, "cpu", tiny.entries, "predictions/never", bad)
    assert not tiny.store.list("predictions/never")


@pytest.mark.parametrize(
    "field, value",
    [("streams", 0), ("io_threads", 0), ("threads", 0), ("batch_size", 0), ("streams", 1000), ("threads", 2.0)],
)
def test_layout_fields_are_bounded(field, value):
    fields = {"batch_size": 1, "streams": 1, "threads": 1, "io_threads": 1, field: value}
    with pytest.raises(ValueError, match=field):
        Layout(**fields)


def test_batch_size_given_is_kept_and_progress_reaches_the_total(tiny, reference):
    calls = []
    layouts = []
    results = predict_tiles(
        tiny.store,
        tiny.model,
        "cpu",
        tiny.entries,
        "predictions/given-batch",
        3,
        progress=lambda done, total: calls.append((done, total)),
        on_layout=layouts.append,
    )
    assert layouts[0].batch_size == 3
    assert calls[-1] == (12, 12)
    assert [r["digest"] for r in results] == [r["digest"] for r in reference]


def test_no_entries_predicts_nothing(tiny):
    assert predict_tiles(tiny.store, tiny.model, "cpu", [], "predictions/none") == []


def test_concurrent_tile_loops_in_one_process_share_the_pools_and_keep_their_outputs(tiny, reference):
    """Two loops at once (e.g. a Dask worker with two threads) run on the same process-wide pools."""
    runtime = load_runtime(tiny.store, tiny.weights, CPU, "torch")
    layout = Layout(1, 2, 1, 4)
    out: dict[str, list[dict]] = {}

    def loop(prefix: str) -> None:
        out[prefix] = predict_tiles(tiny.store, runtime, CPU, tiny.entries, prefix, layout=layout)

    loops = [threading.Thread(target=loop, args=(f"predictions/concurrent-{i}",)) for i in range(2)]
    for t in loops:
        t.start()
    for t in loops:
        t.join(120)
    assert sorted(out) == ["predictions/concurrent-0", "predictions/concurrent-1"]
    for results in out.values():
        assert [r["digest"] for r in results] == [r["digest"] for r in reference]
