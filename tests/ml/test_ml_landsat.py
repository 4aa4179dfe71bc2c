"""The RGB model trained the demo's way is plausible on the real Landsat sample.

The demo trains `landcover-rgb` on synthetic scenes mixed with the Landsat sample's polygons but one:
the "developed" polygon is held out whole, apart from every tile that carries training labels (the
sample's only polygon that is, on the default 256 px grid). Here the same mix at a small budget:
windows of the demo's synthetic training acquisitions and the Landsat clip cut on the region's 256 px
grid, one group (drawn alike) per acquisition, the normalisation fitted on all of them, the demo's RGB
training settings. On the Landsat clip the model is scored on the held-out polygon (79 px of one
class, built-up: a coarse check of transfer to a real town, not a land-cover score) and must not call
the scene water.
"""

import numpy as np
import pytest
import torch
from shapely.geometry import box, shape

from geo_assets.cli.demo import RGB
from geo_assets.geo import sample, synthetic
from geo_assets.geo.grid import TileGrid
from geo_assets.geo.labels import held_out_gap, holdout_tile, label_tile
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
GRID = TileGrid(LANDSAT.crs, 30.0, 256, sample.sample_origin("landsat8"))  # the region's default grid


def _landsat():
    """The clip on its 256 px grid: the mosaic of its tiles' reflectance, training and held-out labels,
    the tiles (image, labels) as training reads them, and the region's window inside the mosaic."""
    tiles = GRID.tiles(LANDSAT.bbox)
    minx, maxy = min(t.bounds[0] for t in tiles), max(t.bounds[3] for t in tiles)
    maxx, miny = max(t.bounds[2] for t in tiles), min(t.bounds[1] for t in tiles)
    image, valid = sample.read_sample("landsat8", (minx, miny, maxx, maxy), LANDSAT.crs, 30.0, RGB)
    labels = np.full(valid.shape, IGNORE, dtype=np.uint8)
    held_out = labels.copy()
    corners = []
    for tile in tiles:
        r, c = round((maxy - tile.bounds[3]) / 30), round((tile.bounds[0] - minx) / 30)
        labels[r : r + 256, c : c + 256] = label_tile(LANDSAT, "polygons", tile, 30.0)
        held_out[r : r + 256, c : c + 256] = holdout_tile(LANDSAT, "polygons", tile)
        corners.append((r, c))
    labels[~valid], held_out[~valid] = IGNORE, IGNORE
    pairs = [(image[:, r : r + 256, c : c + 256], labels[r : r + 256, c : c + 256]) for r, c in corners]
    bx0, by0, bx1, by1 = LANDSAT.bbox
    window = np.zeros(valid.shape, dtype=bool)
    window[round((maxy - by1) / 30) : round((maxy - by0) / 30), round((bx0 - minx) / 30) : round((bx1 - minx) / 30)] = (
        True
    )
    return image, window & valid, labels, held_out, pairs


def _synthetic(region: str, date: str):
    minx, _, _, maxy = REGIONS[region].bbox
    return synthetic.scene(region, date, (minx, maxy - 10 * WINDOW, minx + 10 * WINDOW, maxy), 10.0, RGB)


@pytest.fixture(scope="module")
def landsat_prediction():
    image, inside, labels, held_out, tiles = _landsat()
    synthetic_pairs = [_synthetic(r, d) for r, d in SYNTHETIC]
    pairs = synthetic_pairs + tiles
    groups = list(range(len(synthetic_pairs))) + [len(synthetic_pairs)] * len(tiles)  # the clip is one acquisition
    normalisation = Normalisation.fit([p[0] for p in pairs], RGB)
    config = TrainConfig(**SMALL, device="cpu")
    result = train(
        [normalisation.apply(p[0]) for p in pairs], [p[1] for p in pairs], len(RGB), len(CLASSES), config, groups=groups
    )
    with torch.no_grad():  # the mosaic's sides are multiples of 256: no padding needed
        predicted = result.model(torch.from_numpy(normalisation.apply(image))[None]).argmax(1)[0].numpy()
    polygons = np.where(held_out != IGNORE, held_out, labels)  # every polygon
    return image, inside, held_out, polygons, predicted


def test_held_out_polygon_lies_apart_from_every_training_tile():
    """No tile with training labels comes within the widest prediction margin of a held-out polygon."""
    polygons, _ = sample.read_label_polygons("landsat8")
    held = [shape(polygons[i][0]) for i in sample.SAMPLES["landsat8"].held_out_polygons]
    trained = [shape(g) for i, (g, _) in enumerate(polygons) if i not in sample.SAMPLES["landsat8"].held_out_polygons]
    assert [polygons[i][1] for i in sample.SAMPLES["landsat8"].held_out_polygons] == ["developed"]
    training_tiles = [
        t for t in GRID.tiles(LANDSAT.bbox) if any(box(*t.bounds).intersection(p).area > 0 for p in trained)
    ]
    assert training_tiles
    for tile in training_tiles:
        assert (holdout_tile(LANDSAT, "polygons", tile) == IGNORE).all()
        assert min(box(*tile.bounds).distance(p) for p in held) >= held_out_gap(tile) == 128 * 30.0


@pytest.mark.xfail(
    strict=True,
    reason=(
        "the one held-out polygon is a real town (81 px) the model never saw a label of; trained on synthetic "
        "built-up and three real polygons of other classes, at this budget it calls every one of its pixels "
        "vegetation (built-up IoU 0.0): an honest score under the 0.5 bar (docs/guide/models.md, 'The RGB model on the Landsat sample')"
    ),
)
def test_held_out_polygon_is_recognised(landsat_prediction):
    _, _, held_out, _, predicted = landsat_prediction
    result = scores(confusion_matrix(predicted, held_out, len(CLASSES)), list(CLASSES))
    assert result["miou"] >= 0.5, result["per_class"]


def test_held_out_score_is_over_the_held_out_polygon_only(landsat_prediction):
    _, _, held_out, polygons, predicted = landsat_prediction
    result = scores(confusion_matrix(predicted, held_out, len(CLASSES)), list(CLASSES))
    assert {c for c, s in result["per_class"].items() if s["support"]} == {"built-up"}
    assert 70 <= result["per_class"]["built-up"]["support"] <= 90  # the polygon's 78.8 px of area
    assert result["miou"] is not None


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
