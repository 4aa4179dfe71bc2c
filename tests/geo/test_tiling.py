"""Tile work units: cut imagery/label tiles into COGs in a Store and describe them."""

from __future__ import annotations

import json
import pickle
from importlib import resources

import numpy as np
import pytest
import rasterio
from rasterio.windows import from_bounds
from rio_cogeo.cogeo import cog_validate

from geo_assets.geo import synthetic
from geo_assets.geo.cog import read_raster
from geo_assets.geo.grid import TileGrid
from geo_assets.geo.landcover import CLASSES, IGNORE
from geo_assets.geo.sources import plan_scene
from geo_assets.geo.tiling import cut_imagery_tile, cut_label_tile

BANDS4 = ["blue", "green", "red", "nir"]


def _tiles(region, resolution):
    return TileGrid(region.crs, resolution, 256).tiles(region.bbox)


def _check_georef(store, key, region, tile, count, dtype):
    assert cog_validate(store.path(key))[0]
    data, profile = read_raster(store.path(key))
    assert profile["crs"] == region.crs
    assert profile["transform"] == tile.transform
    assert data.shape == (count, tile.size, tile.size) and str(data.dtype) == dtype
    return data, profile


def test_synthetic_imagery_tile(store, regions):
    region, date = regions["synth-train-a"], "2024-07-01"
    tile = _tiles(region, 10.0)[5]
    entry = cut_imagery_tile(store, plan_scene("synthetic", region, date), BANDS4, "imagery/a", tile)
    assert entry["key"] == tile.key and entry["path"] == f"imagery/a/{tile.key}.tif"
    assert entry["bounds"] == list(tile.bounds)
    assert entry["nodata_fraction"] == 0.0
    json.dumps(entry)  # manifests are JSON

    data, profile = _check_georef(store, entry["path"], region, tile, 4, "uint16")
    assert profile["nodata"] == 0 and profile["band_names"] == BANDS4
    image, truth = synthetic.scene(region.name, date, tile.bounds, 10.0, BANDS4)
    np.testing.assert_array_equal(data, image)

    # The cloud mask beside it.
    assert entry["cloud_path"] == f"imagery/a/{tile.key}.cloud.tif"
    cloud, cprofile = _check_georef(store, entry["cloud_path"], region, tile, 1, "uint8")
    assert cprofile["band_names"] == ["cloud"] and cprofile["nodata"] is None
    expected = synthetic.cloud_mask(region.name, date, tile.bounds, 10.0)
    np.testing.assert_array_equal(cloud[0], expected.astype(np.uint8))
    np.testing.assert_array_equal(cloud[0] == 1, truth == CLASSES.index("cloud"))
    assert entry["cloud_fraction"] == pytest.approx(expected.mean(), abs=1e-6)
    assert store.list("imagery/a") == sorted([entry["path"], entry["cloud_path"]])


def test_find_a_cloudy_tile_and_a_clear_tile(store, regions):
    """cloud_fraction is per tile: it varies across the region (so the field is not a constant)."""
    region, date = regions["synth-train-a"], "2024-06-01"
    fractions = [
        cut_imagery_tile(store, plan_scene("synthetic", region, date), ["red"], "c", t)["cloud_fraction"]
        for t in _tiles(region, 10.0)[::5]
    ]
    assert len(set(fractions)) > 1 and max(fractions) > 0


def test_band_subset_and_order(store, regions):
    region = regions["synth-holdout"]
    tile = _tiles(region, 10.0)[0]
    entry = cut_imagery_tile(store, plan_scene("synthetic", region, "2024-06-01"), ["swir1", "nir"], "p", tile)
    data, profile = read_raster(store.path(entry["path"]))
    assert profile["band_names"] == ["swir1", "nir"]
    full, _ = synthetic.scene(region.name, "2024-06-01", tile.bounds, 10.0, synthetic.BANDS)
    np.testing.assert_array_equal(data, full[[4, 3]])


def test_unknown_source_and_band_write_nothing(store, regions):
    region = regions["synth-train-a"]
    tile = _tiles(region, 10.0)[0]
    with pytest.raises(
        ValueError,
        match=r"unknown imagery source 'landsat'; accepted: earth-search, landsat-c2, planetary-computer, sample, synthetic",
    ):
        cut_imagery_tile(store, plan_scene("landsat", region, "2024-06-01"), BANDS4, "x", tile)
    with pytest.raises(ValueError, match=r"unknown band\(s\) \['thermal'\]"):
        cut_imagery_tile(store, plan_scene("synthetic", region, "2024-06-01"), ["red", "thermal"], "x", tile)
    assert not store.base.exists() or not any(store.base.rglob("*"))


def test_work_unit_arguments_are_picklable(store, regions):
    region = regions["synth-train-a"]
    tile = _tiles(region, 10.0)[0]
    scenes = (plan_scene("synthetic", region, "2024-06-01"), plan_scene("sample", regions["s2-sample"], "2020-01-01"))
    assert pickle.loads(pickle.dumps((store, region, tile))) == (store, region, tile)
    assert repr(pickle.loads(pickle.dumps(scenes))) == repr(scenes)  # repr: the sample's nodata is NaN


def _s2_file():
    return resources.files("geo_assets") / "data" / "sample" / "s2_sample.tif"


def test_sample_imagery_tiles_partly_outside_the_data(store, regions):
    region = regions["s2-sample"]
    tiles = _tiles(region, 10.0)
    assert len(tiles) >= 2
    with rasterio.open(_s2_file()) as src:
        assert src.res == (10.0, 10.0) and src.crs.to_string() == region.crs
        fb = src.bounds
        for tile in tiles:
            entry = cut_imagery_tile(store, plan_scene("sample", region, region.dates[0]), BANDS4, "s2", tile)
            assert "cloud_path" not in entry  # the sample source has no cloud mask
            # Every source's convention: uint16 reflectance x 10000, 0 = no data.
            data, profile = _check_georef(store, entry["path"], region, tile, 4, "uint16")
            assert profile["nodata"] == 0 and profile["band_names"] == BANDS4

            # The tile extends beyond the sample's footprint: the part outside is nodata.
            left, bottom, right, top = tile.bounds
            il, ib, ir, it = max(left, fb.left), max(bottom, fb.bottom), min(right, fb.right), min(top, fb.top)
            assert il < ir and ib < it
            inside_fraction = (ir - il) * (it - ib) / ((right - left) * (top - bottom))
            assert 0 < inside_fraction < 1
            assert entry["nodata_fraction"] > 0
            assert entry["nodata_fraction"] == pytest.approx(1 - inside_fraction, abs=1e-5)

            # Inside: exactly the sample's pixels (L2A DN = reflectance x 10000); outside: 0.
            rows = slice(round((top - it) / 10), round((top - ib) / 10))
            cols = slice(round((il - left) / 10), round((ir - left) / 10))
            expected = src.read([1, 2, 3, 4], window=from_bounds(il, ib, ir, it, src.transform))
            np.testing.assert_array_equal(data[:, rows, cols], expected.astype(np.uint16))
            outside = np.ones(data.shape[1:], dtype=bool)
            outside[rows, cols] = False
            assert (data[:, outside] == 0).all()
            assert not np.isnan(expected).any() and (expected >= 1).all()


def test_landsat_sample_tiles_report_their_nodata(store, regions):
    region = regions["landsat-sample"]
    tiles = _tiles(region, 30.0)
    for tile in (tiles[0], tiles[len(tiles) // 2], tiles[-1]):
        entry = cut_imagery_tile(
            store, plan_scene("sample", region, region.dates[0]), ["red", "green", "blue"], "l8", tile
        )
        data, profile = _check_georef(store, entry["path"], region, tile, 3, "uint16")
        assert profile["nodata"] == 0
        nodata = (data == 0).any(axis=0).mean()
        assert entry["nodata_fraction"] == pytest.approx(nodata, abs=1e-6)
        assert nodata < 1  # every tile of the region touches the data


def test_synthetic_label_tile(store, regions):
    region = regions["synth-train-a"]
    tile = _tiles(region, 10.0)[3]
    entry = cut_label_tile(store, region, "synthetic", 10.0, "labels/a", tile)
    assert entry["path"] == f"labels/a/{tile.key}.tif" and entry["bounds"] == list(tile.bounds)
    data, profile = _check_georef(store, entry["path"], region, tile, 1, "uint8")
    assert profile["nodata"] == IGNORE and profile["band_names"] == ["class"]
    expected = synthetic.land_cover(region.name, tile.bounds, 10.0)
    np.testing.assert_array_equal(data[0], expected)
    assert entry["class_counts"] == np.bincount(expected.ravel(), minlength=len(CLASSES)).tolist()
    assert len(entry["class_counts"]) == len(CLASSES) and sum(entry["class_counts"]) == 256 * 256
    assert entry["class_counts"][CLASSES.index("cloud")] == 0
    assert entry["labelled_fraction"] == 1.0
    json.dumps(entry)


def test_polygon_label_tiles_count_what_they_store(store, regions):
    region = regions["landsat-sample"]
    entries = [cut_label_tile(store, region, "polygons", 30.0, "labels/l8", t) for t in _tiles(region, 30.0)]
    # Training labels, and beside them the polygons held out whole where a tile has some.
    held = [e["holdout_path"] for e in entries if "holdout_path" in e]
    assert held and store.list("labels/l8") == sorted([e["path"] for e in entries] + held)
    labelled = 0
    for e in entries:
        data, _ = read_raster(store.path(e["path"]))
        counts = np.bincount(data.ravel(), minlength=256)
        assert e["class_counts"] == counts[: len(CLASSES)].tolist()
        if "holdout_path" in e:
            holdout = read_raster(store.path(e["holdout_path"]))[0]
            assert e["holdout_class_counts"] == np.bincount(holdout.ravel(), minlength=256)[: len(CLASSES)].tolist()
            assert not ((holdout != IGNORE) & (data != IGNORE)).any()
        assert e["labelled_fraction"] == pytest.approx(1 - counts[IGNORE] / data.size, abs=1e-6)
        assert sum(e["class_counts"]) + counts[IGNORE] == data.size
        labelled += sum(e["class_counts"])
        json.dumps(e)
    assert labelled > 0
    assert any(0 < e["labelled_fraction"] < 1 for e in entries)
    assert any(e["labelled_fraction"] == 0 for e in entries)


def test_manifest_entries_carry_pixel_digests(store, regions):
    """Data versions (and so model versions) must change when pixels change, even if paths do not."""
    from geo_assets.geo.tiling import pixel_digest

    region = regions["synth-train-a"]
    tile = TileGrid(region.crs, 10.0, 64).tiles(region.bbox)[0]
    bands = ["blue", "green", "red", "nir"]
    june = cut_imagery_tile(store, plan_scene("synthetic", region, "2024-06-01"), bands, "i", tile)
    data, _ = read_raster(store.path(june["path"]))
    assert june["digest"] == pixel_digest(data)
    july = cut_imagery_tile(
        store, plan_scene("synthetic", region, "2024-07-01"), bands, "i", tile
    )  # same path, new pixels
    assert july["path"] == june["path"] and july["digest"] != june["digest"]
    label = cut_label_tile(store, region, "synthetic", 10.0, "l", tile)
    mask, _ = read_raster(store.path(label["path"]))
    assert label["digest"] == pixel_digest(mask[0])
