"""Label sources: synthetic land cover, or the sample polygons rasterised onto the grid."""

from __future__ import annotations

import json
from importlib import resources

import numpy as np
import pytest
import shapely
from shapely.geometry import shape

from geo_assets.geo import synthetic
from geo_assets.geo.grid import TileGrid
from geo_assets.geo.labels import LABEL_SOURCES, POLYGON_CLASSES, check_label_source, label_tile
from geo_assets.geo.landcover import CLASSES, IGNORE
from geo_assets.geo.regions import Region

EXPECTED_CLASS = {"water": 0, "crop": 1, "tree": 1, "developed": 2}


def test_polygon_class_mapping():
    assert {k: CLASSES.index(v) for k, v in POLYGON_CLASSES.items()} == EXPECTED_CLASS
    assert IGNORE == 255 and IGNORE >= len(CLASSES)


def test_check_label_source(regions):
    a, s2, l8 = regions["synth-train-a"], regions["s2-sample"], regions["landsat-sample"]
    assert check_label_source(None, a) == "synthetic"  # the region's default
    assert check_label_source(None, l8) == "polygons"
    assert check_label_source("polygons", a) == "polygons"  # an explicit choice wins
    assert check_label_source("synthetic", s2) == "synthetic"
    with pytest.raises(ValueError, match=r"unknown label source 'osm'; accepted: synthetic, polygons"):
        check_label_source("osm", a)
    with pytest.raises(ValueError, match=r"region 's2-sample' has no label source; pass one of: synthetic, polygons"):
        check_label_source(None, s2)
    assert LABEL_SOURCES == ("synthetic", "polygons")


def test_label_tile_refuses_unknown_source(regions):
    region = regions["synth-train-a"]
    tile = TileGrid(region.crs, 10.0).tiles(region.bbox)[0]
    with pytest.raises(ValueError, match="unknown label source 'osm'"):
        label_tile(region, "osm", tile, 10.0)


def test_synthetic_labels_equal_land_cover(regions):
    region = regions["synth-train-b"]
    tiles = TileGrid(region.crs, 10.0, 256).tiles(region.bbox)
    for tile in (tiles[0], tiles[-1]):
        mask = label_tile(region, "synthetic", tile, 10.0)
        assert mask.shape == (256, 256) and mask.dtype == np.uint8
        np.testing.assert_array_equal(mask, synthetic.land_cover(region.name, tile.bounds, 10.0))
        assert not (mask == CLASSES.index("cloud")).any()  # labels are land cover, never cloud


def test_polygon_labels_for_region_without_label_polygons(regions):
    region = regions["s2-sample"]  # sample imagery exists, but without polygons
    tile = TileGrid(region.crs, 10.0).tiles(region.bbox)[0]
    with pytest.raises(ValueError, match=r"sample scene 'sentinel2' covering region 's2-sample' has no label polygons"):
        label_tile(region, "polygons", tile, 10.0)


def test_polygon_labels_for_region_outside_every_sample(regions):
    region = Region("nowhere", (100000.0, 100000.0, 110000.0, 110000.0), "EPSG:32631")
    tile = TileGrid(region.crs, 10.0).tiles(region.bbox)[0]
    with pytest.raises(ValueError, match=r"no sample scene covers region 'nowhere'"):
        label_tile(region, "polygons", tile, 10.0)


def _polygons():
    """The shipped polygons, read straight from the GeoJSON (independently of geo_assets.geo.sample)."""
    path = resources.files("geo_assets") / "data" / "sample" / "landsat8_polygons.geojson"
    fc = json.loads(path.read_text())
    assert "32621" in fc["crs"]["properties"]["name"]  # same CRS as the region: no reprojection
    return [(shape(f["geometry"]), EXPECTED_CLASS[f["properties"]["name"]]) for f in fc["features"]]


def _centres(tile):
    res = tile.transform.a
    xs = tile.bounds[0] + (np.arange(tile.size) + 0.5) * res
    ys = tile.bounds[3] - (np.arange(tile.size) + 0.5) * res
    return np.meshgrid(xs, ys)


@pytest.mark.parametrize("part", ["train", "holdout"])
def test_polygon_labels_only_inside_polygons(regions, part):
    """The polygons the sample holds out (the fourth, "developed") label the held-out masks, whole; the
    others label the training masks, whole."""
    from geo_assets.geo.labels import holdout_tile

    region = regions["landsat-sample"]
    held_out = {3}  # the shipped file's fourth polygon, "developed"
    polygons = [(g, c) for i, (g, c) in enumerate(_polygons()) if (i in held_out) == (part == "holdout")]
    grid = TileGrid(region.crs, 30.0, 256, (15.0, 15.0))  # the Landsat lattice the labels follow
    total = np.zeros(256, dtype=np.int64)
    for tile in grid.tiles(region.bbox):
        train, held = label_tile(region, "polygons", tile, 30.0), holdout_tile(region, "polygons", tile)
        assert not ((train != IGNORE) & (held != IGNORE)).any()  # never the same pixel
        mask = train if part == "train" else held
        assert mask.shape == (256, 256) and mask.dtype == np.uint8
        assert set(np.unique(mask)) <= {0, 1, 2, IGNORE}
        total += np.bincount(mask.ravel(), minlength=256)
        x, y = _centres(tile)
        inside_any = np.zeros(mask.shape, dtype=bool)
        for geom, cls in polygons:
            # Pixel centres inside the polygon (within a centimetre of it) may carry its class...
            near = shapely.contains_xy(geom.buffer(0.01), x, y)
            inside_any |= near
            # ...and those clearly inside it (one pixel in from the edge) must.
            deep = shapely.contains_xy(geom.buffer(-30.0), x, y)
            others = [g for g, c in polygons if c != cls]
            overlap = np.zeros_like(deep)
            for g in others:
                overlap |= shapely.contains_xy(g, x, y)
            assert (mask[deep & ~overlap] == cls).all(), tile.key
        # Outside every polygon: IGNORE, and only there.
        assert (mask[~inside_any] == IGNORE).all(), tile.key
        # Every labelled pixel is inside a polygon of its class.
        labelled = mask != IGNORE
        for cls in np.unique(mask[labelled]):
            ok = np.zeros(mask.shape, dtype=bool)
            for geom, c in polygons:
                if c == cls:
                    ok |= shapely.contains_xy(geom.buffer(0.01), x, y)
            assert ok[mask == cls].all(), (tile.key, cls)
    # Some pixels of every class of the part's polygons are labelled, roughly as many as their areas say.
    classes = {c for _, c in polygons}
    assert classes == ({0, 1} if part == "train" else {2})
    assert all(total[c] == 0 for c in {0, 1, 2} - classes)
    for cls in classes:
        area = sum(g.area for g, c in polygons if c == cls)
        assert total[cls] == pytest.approx(area / 900.0, rel=0.35, abs=8), cls
    assert total[IGNORE] > 0.9 * total.sum()


def test_a_grid_whose_training_tile_comes_near_a_held_out_polygon_is_refused(regions):
    """At 512 px (15.4 km) the tile of water, crop and tree ends 700 m north of the held-out town, within
    the 256 px margin a prediction may read: the town's ground would not be held out."""
    from geo_assets.geo.labels import holdout_tile

    region = regions["landsat-sample"]
    grid = TileGrid(region.crs, 30.0, 512, (15.0, 15.0))
    with pytest.raises(
        ValueError,
        match=r"tile \S+ of region 'landsat-sample' holds training labels and lies 700 m "
        r"from held-out polygon developed \(polygon 3\), less than the 7680 m margin",
    ):
        for tile in grid.tiles(region.bbox):
            label_tile(region, "polygons", tile, 30.0)
    for size in (16, 64, 128, 256):  # every tile size up to the default keeps it apart
        for tile in TileGrid(region.crs, 30.0, size, (15.0, 15.0)).tiles((737000, -2813000, 744000, -2794000)):
            label_tile(region, "polygons", tile, 30.0)
            holdout_tile(region, "polygons", tile)
