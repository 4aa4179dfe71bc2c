"""PNG previews: true colour beside class colours."""

from __future__ import annotations

import io

import numpy as np
import pytest
from affine import Affine
from PIL import Image

from geo_assets.geo.cog import write_cog
from geo_assets.geo.grid import TileGrid
from geo_assets.geo.landcover import COLOURS, IGNORE
from geo_assets.geo.preview import class_colours, side_by_side_png, true_colour
from geo_assets.geo.sources import plan_scene
from geo_assets.geo.tiling import cut_imagery_tile


def _decode(png: bytes) -> np.ndarray:
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    img = Image.open(io.BytesIO(png))
    img.load()
    assert img.mode == "RGB"
    return np.asarray(img)


def test_side_by_side_png():
    rng = np.random.default_rng(0)
    left = rng.integers(0, 256, (40, 30, 3), dtype=np.uint8)
    right = rng.integers(0, 256, (25, 50, 3), dtype=np.uint8)
    out = _decode(side_by_side_png(left, right, gap=8))
    assert out.shape == (40, 30 + 8 + 50, 3)
    np.testing.assert_array_equal(out[:, :30], left)
    np.testing.assert_array_equal(out[:25, 38:], right)
    assert (out[:, 30:38] == 255).all()  # white gap
    assert (out[25:, 38:] == 255).all()  # white below the shorter image


def test_side_by_side_png_no_gap():
    a = np.zeros((10, 10, 3), dtype=np.uint8)
    out = _decode(side_by_side_png(a, a + 7, gap=0))
    assert out.shape == (10, 20, 3) and (out[:, :10] == 0).all() and (out[:, 10:] == 7).all()


@pytest.fixture
def synthetic_tiles(store, regions):
    region = regions["synth-train-a"]
    tiles = TileGrid(region.crs, 10.0, 256).tiles(region.bbox)[:2]  # two tiles side by side
    assert tiles[0].row == tiles[1].row
    bands = ["blue", "green", "red", "nir"]
    entries = [cut_imagery_tile(store, plan_scene("synthetic", region, "2024-06-01"), bands, "i", t) for t in tiles]
    return [(store.path(e["path"]), e["bounds"]) for e in entries], bands


@pytest.mark.parametrize(
    "max_size, shape", [(512, (256, 512)), (128, (64, 128)), (100, (32, 64))]
)  # power-of-two decimation
def test_true_colour_on_tiles(synthetic_tiles, max_size, shape):
    paths, bands = synthetic_tiles
    rgb = true_colour(paths, bands, max_size=max_size)
    assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3
    assert rgb.shape[:2] == shape
    assert max(rgb.shape[:2]) <= max_size
    # Percentile stretch: uses the full range and is not flat.
    assert rgb.min() == 0 and rgb.max() == 255 and rgb.std() > 10


def _gradient_tiles(tmp_path):
    """Two 3-band COGs side by side: red rises west->east, green north->south, blue is constant."""
    paths = []
    for i in range(2):
        cols = np.arange(64) + 64 * i
        red = np.broadcast_to(100 + 10 * cols, (64, 64))
        green = np.broadcast_to((100 + 10 * np.arange(64))[:, None], (64, 64))
        blue = np.full((64, 64), 500)
        data = np.stack([blue, green, red]).astype(np.uint16)
        path = tmp_path / f"t{i}.tif"
        write_cog(path, data, "EPSG:32631", Affine(10, 0, 640 * i, 0, -10, 640), 0, ["blue", "green", "red"])
        paths.append((str(path), (640.0 * i, 0.0, 640.0 * (i + 1), 640.0)))
    return paths


def test_true_colour_maps_bands_to_rgb_and_places_tiles(tmp_path):
    rgb = true_colour(_gradient_tiles(tmp_path), ["blue", "green", "red"], max_size=512)
    assert rgb.shape == (64, 128, 3)
    r, g, b = (rgb[..., i].astype(int) for i in range(3))
    assert (np.diff(r, axis=1) >= 0).all() and r[:, -1].mean() > r[:, 0].mean() + 200  # east is redder
    assert (np.diff(g, axis=0) >= 0).all() and g[-1].mean() > g[0].mean() + 100  # south is greener
    assert (np.diff(r, axis=0) == 0).all() and (np.diff(g, axis=1) == 0).all()


def test_class_colours(tmp_path):
    classes = np.array([[0, 1, 2, 3], [4, IGNORE, 0, 1]], dtype=np.uint8).repeat(4, axis=0).repeat(4, axis=1)
    path = tmp_path / "classes.tif"
    write_cog(path, classes, "EPSG:32631", Affine(10, 0, 0, 0, -10, 80), IGNORE, ["class"])
    out = class_colours(str(path), (8, 16))
    assert out.shape == (8, 16, 3) and out.dtype == np.uint8
    palette = {i: c for i, c in enumerate(COLOURS)} | {IGNORE: (0, 0, 0)}
    for (row, col), cls in np.ndenumerate(classes):
        assert tuple(out[row, col]) == palette[cls]
    half = class_colours(str(path), (2, 4))  # nearest-neighbour downsampling keeps classes pure
    assert {tuple(p) for p in half.reshape(-1, 3)} <= set(palette.values())


def test_true_colour_stretches_each_band_2_to_98_percent_over_valid_pixels(tmp_path):
    """Bands of very different brightness each fill the range (a natural true colour, no cast);
    no-data pixels neither take part in the percentiles nor get a colour."""
    rng = np.random.default_rng(3)
    red = rng.integers(2000, 3000, (64, 64))
    green = rng.integers(600, 800, (64, 64))
    blue = rng.integers(300, 400, (64, 64))
    data = np.stack([blue, green, red]).astype(np.uint16)
    data[:, :, :16] = 0  # no data: a quarter of the tile
    path = tmp_path / "t.tif"
    write_cog(path, data, "EPSG:32631", Affine(10, 0, 0, 0, -10, 640), 0, ["blue", "green", "red"])
    rgb = true_colour([(str(path), (0.0, 0.0, 640.0, 640.0))], ["blue", "green", "red"])
    valid = rgb[:, 16:]
    for i, band in enumerate((red, green, blue)):
        lo, hi = np.percentile(band[:, 16:], (2, 98))
        expected = np.clip((band[:, 16:] - lo) / (hi - lo) * 255, 0, 255).round()
        np.testing.assert_allclose(valid[..., i], expected, atol=1)
        assert np.median(valid[..., i]) == pytest.approx(127, abs=20)  # every band centred: no colour cast
    assert (rgb[:, :16] == 0).all()
