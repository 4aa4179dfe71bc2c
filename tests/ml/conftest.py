"""A tiny trained model version and a region of tile COGs in a real local store, shared by the
inference and runtime tests (made once per session: training takes a few seconds)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import rasterio
from affine import Affine

from geo_assets.geo import synthetic
from geo_assets.geo.cog import write_cog
from geo_assets.geo.integrity import file_record
from geo_assets.geo.landcover import CLASSES
from geo_assets.geo.store import Store, local_root
from geo_assets.ml.export import EXPORTS
from geo_assets.ml.normalisation import normalize
from geo_assets.ml.train import TrainConfig, train

TILE, COLS, ROWS, RES = 64, 4, 3, 10.0
ORIGIN = (400000.0, 5121920.0)  # west, north
BANDS = ["blue", "green", "red", "nir"]
VERSION_PREFIX = "models/tiny-unet/v1"


@dataclass
class TinyRegion:
    store: Store
    entries: list[dict]  # as in an imagery manifest: key and path per tile, row-major
    weights: str  # the version's model.pt2 key (model.onnx beside it)
    model: object  # the trained nn.Module

    def classes(self, results: list[dict]) -> np.ndarray:
        """The class tiles that predict_tiles wrote, stacked in the order of `results`."""
        out = []
        for entry in results:
            with rasterio.open(self.store.path(entry["path"])) as src:
                out.append(src.read(1))
        return np.stack(out)


@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> TinyRegion:
    store = Store(local_root(tmp_path_factory.mktemp("inference") / "store"))
    west, north = ORIGIN
    bounds = (west, north - ROWS * TILE * RES, west + COLS * TILE * RES, north)
    image, truth = synthetic.scene("synth-train-a", "2024-06-01", bounds, RES, BANDS)
    image[:, :5, :7] = 0  # a corner without data: predicted as no data (255)
    entries = []
    for r in range(ROWS):
        for c in range(COLS):
            window = image[:, r * TILE : (r + 1) * TILE, c * TILE : (c + 1) * TILE]
            key = f"{c}_{r}"
            path = f"imagery/tiny/{key}.tif"
            transform = Affine(RES, 0, west + c * TILE * RES, 0, -RES, north - r * TILE * RES)
            with store.writing(path) as tmp:
                write_cog(tmp, window, "EPSG:32631", transform, 0, BANDS)
            entries.append({"key": key, "path": path})
    config = TrainConfig(
        architecture="unet",
        hyperparameters={"base_channels": 8},
        epochs=4,
        batch_size=8,
        learning_rate=5e-3,
        chip_size=64,
        chips_per_epoch=96,
        seed=0,
        device="cpu",
    )
    model = train([normalize(image)], [truth], len(BANDS), len(CLASSES), config).model
    files = {}  # as training records them: loads check each file against its size and sha256
    for name, export in EXPORTS.items():
        with store.writing(f"{VERSION_PREFIX}/{name}") as tmp:
            export(model, tmp, len(BANDS))
            files[name] = file_record(tmp)
    store.write_json(f"{VERSION_PREFIX}/model.json", {"files": files})
    return TinyRegion(store, entries, f"{VERSION_PREFIX}/model.pt2", model)


@pytest.fixture(autouse=True)
def _layout_cache(tmp_path, monkeypatch):
    """Each test measures layouts into its own cache, never the user's. Test machines are shared,
    so the busy-machine rule is off here and tested on its own (test_ml_runtime)."""
    from geo_assets.ml import layout

    monkeypatch.setenv(layout.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setattr(layout, "_memory", {})
    monkeypatch.setattr(layout, "BUSY", 0.0)
