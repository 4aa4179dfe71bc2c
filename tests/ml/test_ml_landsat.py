"""The RGB model trained the demo's way is plausible on the real Landsat sample.

The demo trains `landcover-rgb` on synthetic scenes mixed with the training halves of the Landsat
sample's polygons. Here the same mix at a small budget: windows of the demo's synthetic training
acquisitions and the Landsat clip with its training halves, one group (drawn alike) per acquisition,
the normalisation fitted on all of them, the demo's RGB training settings. On the Landsat clip the
model must score on the held-out polygon halves and must not call the scene water.
"""

import numpy as np
import pytest
import torch

from geo_assets.demo import RGB
from geo_assets.geo import sample, synthetic
from geo_assets.geo.grid import Tile
from geo_assets.geo.labels import holdout_tile, label_tile
from geo_assets.geo.landcover import CLASSES, IGNORE
from geo_assets.geo.regions import builtin_regions
from geo_assets.ml.metrics import confusion_matrix, scores
from geo_assets.ml.normalisation import Normalisation
from geo_assets.ml.train import TrainConfig, train

REGIONS = builtin_regions()
LANDSAT = REGIONS["landsat-sample"]
SYNTHETIC = [("synth-train-a", "2024-06-01"), ("synth-train-a", "2024-07-01"), ("synth-train-b", "2024-06-01")]
WINDOW = 256  # px of each synthetic acquisition (the demo's are 1024)
SMALL = {"epochs": 8, "chips_per_epoch": 128, "chip_size": 64}  # the demo: 8 x 256 chips of 128 px


def _landsat():
    """The clip as one square tile on its own lattice: reflectance, the region's window, train and held-out labels."""
    minx, miny, maxx, maxy = LANDSAT.bbox
    rows, cols = round((maxy - miny) / 30), round((maxx - minx) / 30)
    size = max(rows, cols)
    tile = Tile(0, 0, (minx, maxy - 30 * size, minx + 30 * size, maxy), size)
    image, valid = sample.read_sample("landsat8", tile.bounds, LANDSAT.crs, 30.0, RGB)
    labels, held_out = label_tile(LANDSAT, "polygons", tile, 30.0), holdout_tile(LANDSAT, "polygons", tile)
    labels[~valid], held_out[~valid] = IGNORE, IGNORE
    window = np.zeros(valid.shape, dtype=bool)
    window[:rows, :cols] = True
    return image, window & valid, labels, held_out


def _synthetic(region: str, date: str):
    minx, _, _, maxy = REGIONS[region].bbox
    return synthetic.scene(region, date, (minx, maxy - 10 * WINDOW, minx + 10 * WINDOW, maxy), 10.0, RGB)


@pytest.fixture(scope="module")
def landsat_prediction():
    image, inside, labels, held_out = _landsat()
    pairs = [_synthetic(r, d) for r, d in SYNTHETIC] + [(image, labels)]
    normalisation = Normalisation.fit([p[0] for p in pairs], RGB)
    config = TrainConfig(**SMALL, device="cpu")
    result = train([normalisation.apply(p[0]) for p in pairs], [p[1] for p in pairs], len(RGB), len(CLASSES), config,
                   groups=list(range(len(pairs))))
    size = image.shape[1]
    padded = -(-size // 8) * 8
    x = np.zeros((len(RGB), padded, padded), dtype=np.float32)
    x[:, :size, :size] = normalisation.apply(image)
    with torch.no_grad():
        predicted = result.model(torch.from_numpy(x)[None]).argmax(1)[0, :size, :size].numpy()
    polygons = np.where(held_out != IGNORE, held_out, labels)  # both halves
    return image, inside, held_out, polygons, predicted


def test_held_out_polygons_are_recognised(landsat_prediction):
    _, _, held_out, _, predicted = landsat_prediction
    result = scores(confusion_matrix(predicted, held_out, len(CLASSES)), list(CLASSES))
    assert {c for c, s in result["per_class"].items() if s["support"]} == {"water", "vegetation", "built-up"}
    assert result["miou"] >= 0.5, result["per_class"]


def test_water_share_is_near_what_the_polygons_say(landsat_prediction):
    """The clip is a reservoir among fields and forest: about a fifth water, not most of it.

    Water's reference: in every water polygon blue exceeds 1.2 x red, in no land polygon does; the
    share of the clip where it holds is the water we expect, and the model's share must be within
    15 points of it. Vegetation (crops, pasture, forest) is the largest class."""
    image, inside, _, polygons, predicted = landsat_prediction
    blue, red = image[RGB.index("blue")].astype(float), image[RGB.index("red")].astype(float)
    watery = blue > 1.2 * red
    labelled = polygons != IGNORE
    assert watery[labelled & (polygons == CLASSES.index("water"))].all()
    assert not watery[labelled & (polygons != CLASSES.index("water"))].any()
    reference = watery[inside].mean()
    assert 0.1 < reference < 0.3  # the polygons' rule finds the reservoir
    shares = np.bincount(predicted[inside], minlength=len(CLASSES)) / inside.sum()
    assert abs(shares[CLASSES.index("water")] - reference) <= 0.15, dict(zip(CLASSES, shares.round(3)))
    assert shares.argmax() == CLASSES.index("vegetation"), dict(zip(CLASSES, shares.round(3)))


def test_acquisitions_are_drawn_alike():
    """A sparsely labelled scene among many dense tiles gets its group's share of the chips."""
    from geo_assets.ml.data import ChipDataset

    dense = [(np.ones((3, 32, 32), np.float32), np.zeros((32, 32), np.uint8)) for _ in range(9)]
    sparse_label = np.full((32, 32), IGNORE, np.uint8)
    sparse_label[5, 5] = 1
    images = [d[0] for d in dense] + [np.ones((3, 32, 32), np.float32)]
    labels = [d[1] for d in dense] + [sparse_label]
    alike = ChipDataset(images, labels, 16, 400, groups=[0] * 9 + [1])
    assert alike.tile_weights[-1] == pytest.approx(0.5)
    assert sum((y == 1).any().item() for _, y in alike) > 150  # about half the chips hold the polygon
    assert ChipDataset(images, labels, 16, 4).tile_weights[-1] == pytest.approx(0.1)  # without groups: every tile alike
