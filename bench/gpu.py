"""The GPU check: train the demo's U-Net on CUDA, predict on CUDA, and use the CUDA-trained bundle on CPU.

Runs where a GPU is (needs only torch, numpy and the grid's pure-Python dependencies, not GDAL or
Dagster), then the figures are written here:

    python -m bench.gpu run --out gpu.json        # on the GPU machine
    python -m bench.gpu report gpu.json           # here: rewrites the gpu section of BENCHMARKS.md

What it checks, beyond timing: the exported bundle trained on CUDA loads with `load_model` on
the CPU and predicts the same classes as on CUDA (agreement reported, not assumed), and both reach
the held-out mIoU the demo's gate asks for. The same training also runs on that machine's CPU for
comparison (same data, config and seed).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from geo_assets.geo.landcover import CLASSES
from geo_assets.geo.synthetic import scene
from geo_assets.ml.export import export_model, load_model
from geo_assets.ml.metrics import confusion_matrix, scores
from geo_assets.ml.normalisation import normalize
from geo_assets.ml.predict import predict_batch
from geo_assets.ml.train import TrainConfig, train

# What the figures measure (bench.stale): a change to any of these since the recorded commit makes them stale.
MEASURES = [
    "bench/gpu.py",
    "geo_assets/ml/train.py",
    "geo_assets/ml/data.py",
    "geo_assets/ml/models.py",
    "geo_assets/ml/export.py",
    "geo_assets/ml/predict.py",
    "geo_assets/ml/normalisation.py",
    "geo_assets/ml/metrics.py",
    "geo_assets/ml/device.py",
    "geo_assets/geo/synthetic.py",
]

# The demo's training and held-out regions (geo_assets/data/regions.json), 1024 px square at 10 m.
TRAIN = [
    ("synth-train-a", "2024-06-01", (399360, 5120000, 409600, 5130240)),
    ("synth-train-a", "2024-07-01", (399360, 5120000, 409600, 5130240)),
    ("synth-train-b", "2024-06-01", (419840, 5120000, 430080, 5130240)),
]
HOLDOUT = ("synth-holdout", "2024-06-01", (440320, 5120000, 450560, 5130240))
TILE = 256
BANDS = ("blue", "green", "red", "nir")


def _tiles(image: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    c, h, w = image.shape
    n = h // TILE
    x = image.reshape(c, n, TILE, n, TILE).transpose(1, 3, 0, 2, 4).reshape(n * n, c, TILE, TILE)
    y = truth.reshape(n, TILE, n, TILE).transpose(0, 2, 1, 3).reshape(n * n, TILE, TILE)
    return x, y


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _predict_all(model, x: np.ndarray, device: torch.device, batch: int) -> np.ndarray:
    return np.concatenate([predict_batch(model, x[i : i + batch], device) for i in range(0, len(x), batch)])


def _throughput(model, x: np.ndarray, device: torch.device, batch: int, repeats: int) -> dict:
    _predict_all(model, x[: 2 * batch], device, batch)  # warm-up: kernels, allocator
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        _predict_all(model, x, device, batch)
        _sync(device)
        times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    return {"batch": batch, "seconds": seconds, "mpx_per_s": x.shape[0] * TILE * TILE / seconds / 1e6}


def _miou(pred: np.ndarray, truth: np.ndarray) -> float:
    return scores(confusion_matrix(pred, truth, len(CLASSES)), CLASSES)["miou"]


def run(out: Path, epochs: int, cpu_epochs: int, repeats: int) -> dict:
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run this on the GPU machine")
    cuda = torch.device("cuda")
    images, labels = [], []
    for region, date, bounds in TRAIN:
        image, truth = scene(region, date, bounds, bands=BANDS)
        images.append(normalize(image))
        labels.append(truth)
    hold_image, hold_truth = scene(*HOLDOUT, bands=BANDS)
    x, y = _tiles(normalize(hold_image), hold_truth)
    x = np.concatenate([x] * 16)  # 256 tiles of 256 px for throughput (16.8 Mpx)

    result: dict = {
        "gpu": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "python": platform.python_version(),
        "cpu_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "tiles": int(x.shape[0]),
        "tile_px": TILE,
        "training": {},
    }
    trained = {}
    for device, n_epochs in (("cuda", epochs), ("cpu", cpu_epochs)):
        config = TrainConfig(epochs=n_epochs, device=device, seed=0)
        fit = train(images, labels, len(BANDS), len(CLASSES), config)
        trained[device] = fit.model
        result["training"][device] = {
            "epochs": n_epochs,
            "seconds": fit.seconds,
            "seconds_per_epoch": fit.seconds / n_epochs,
            "final_loss": fit.loss_curve[-1],
            "chips_per_epoch": config.chips_per_epoch,
            "chip_size": config.chip_size,
            "batch_size": config.batch_size,
        }

    with tempfile.TemporaryDirectory() as tmp:
        bundle = export_model(trained["cuda"], Path(tmp) / "model.pt2", len(BANDS))
        on_cuda = load_model(bundle, cuda)
        on_cpu = load_model(bundle, "cpu")
        result["predict_cuda"] = [_throughput(on_cuda, x, cuda, b, repeats) for b in (1, 16, 64)]
        result["predict_cpu"] = [_throughput(on_cpu, x[:64], torch.device("cpu"), b, 1) for b in (1, 16)]
        holdout_x = x[: len(y)]
        pred_cuda = _predict_all(on_cuda, holdout_x, cuda, 16)
        pred_cpu = _predict_all(on_cpu, holdout_x, torch.device("cpu"), 16)
        cpu_trained = _predict_all(
            load_model(export_model(trained["cpu"], Path(tmp) / "cpu.pt2", len(BANDS))),
            holdout_x,
            torch.device("cpu"),
            16,
        )
    result["bundle_on_cpu"] = {
        "pixels_equal": float((pred_cuda == pred_cpu).mean()),
        "miou_cuda": _miou(pred_cuda, y),
        "miou_cpu": _miou(pred_cpu, y),
        "miou_cpu_trained": _miou(cpu_trained, y),
    }
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return result


def report(path: Path) -> None:
    from bench.common import write_section

    r = json.loads(path.read_text())
    t, b = r["training"], r["bundle_on_cpu"]
    minx, miny, maxx, maxy = HOLDOUT[2]
    held_out_px = round((maxx - minx) / 10) * round((maxy - miny) / 10)
    differing = round((1 - b["pixels_equal"]) * held_out_px)
    rows = "\n".join(
        f"| {d} | {t[d]['epochs']} | {t[d]['seconds']:.1f} | {t[d]['seconds_per_epoch']:.2f} | {t[d]['final_loss']:.3f} |"
        for d in ("cuda", "cpu")
    )
    preds = "\n".join(
        f"| {dev} | {p['batch']} | {p['seconds']:.2f} | {p['mpx_per_s']:.1f} |"
        for dev, key in (("cuda", "predict_cuda"), ("cpu", "predict_cpu"))
        for p in r[key]
    )
    section = f"""## GPU check: training and prediction on CUDA, the CUDA-trained bundle on CPU

`python -m bench.gpu run --out gpu.json` on the lent GPU machine ({r["gpu"]}, torch {r["torch"]}, CUDA {r["cuda"]},
Python {r["python"]}, {r["cpu_count"]} CPU cores, torch CPU threads {r["cpu_threads"]}; {r["date"]}), then
`python -m bench.gpu report gpu.json` here. The demo's U-Net (default config: chips of {t["cuda"]["chip_size"]} px,
{t["cuda"]["chips_per_epoch"]} chips per epoch, batch {t["cuda"]["batch_size"]}, seed 0) trained on the demo's three
synthetic training scenes with `geo_assets.ml.train`, once on CUDA and once on that machine's CPU.

| trained on | epochs | seconds | s/epoch | final loss |
|---|---:|---:|---:|---:|
{rows}

Prediction with the CUDA-trained bundle (`export_model` then `load_model`) over {r["tiles"]} tiles of {r["tile_px"]} px
held in memory (`predict_batch`, timings include host-device copies; CUDA: median of the repeats after a warm-up;
CPU: 64 tiles, one run):

| device | batch | seconds | Mpx/s |
|---|---:|---:|---:|
{preds}

The CUDA-trained bundle on CPU: {b["pixels_equal"] * 100:.4f} % of the {held_out_px:,} held-out pixels get the same class as
on CUDA ({differing} pixel(s) differ: argmax near-ties under different kernels);
held-out mIoU (synth-holdout) {b["miou_cuda"]:.3f} on CUDA, {b["miou_cpu"]:.3f} on CPU; the CPU-trained model
{b["miou_cpu_trained"]:.3f}. Model versions differ between the two (the version id records the device type,
docs/guide/models.md, "Model versions")."""
    write_section("gpu", MEASURES, section)
    print(section)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run")
    r.add_argument("--out", type=Path, required=True)
    r.add_argument("--epochs", type=int, default=8)
    r.add_argument("--cpu-epochs", type=int, default=8)
    r.add_argument("--repeats", type=int, default=5)
    p = sub.add_parser("report")
    p.add_argument("path", type=Path)
    args = parser.parse_args()
    if args.command == "run":
        run(args.out, args.epochs, args.cpu_epochs, args.repeats)
    else:
        report(args.path)


if __name__ == "__main__":
    main()
