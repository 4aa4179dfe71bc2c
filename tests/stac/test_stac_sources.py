"""STAC sources end to end: rustac search, COGs in SeaweedFS read through GDAL /vsis3/, real pixels."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from expect import BANDS, landsat_layer, local, mosaic, s2_layer, window
from stac_regions import L8_REGION, S2_REGION, tiles

from devtools.emulators import stac_data
from geo_assets.geo import stac
from geo_assets.geo.sources import plan_scene
from geo_assets.geo.stac import CorruptObjectError, ItemMismatchError, NoItemsError, ObjectMissingError

A, B = "S2B_19FFM_20240601_0_L2A", "S2A_19FFM_20240601_1_L2A"  # 10 % and 35 % cloud, both baseline 05.00


def _sample(bounds):
    dn = stac_data.s2_sample_dn()
    return np.stack([window(dn[b], stac_data.S2_TRANSFORM, bounds, 10.0) for b in BANDS])


# --- search --------------------------------------------------------------------------------


def test_search_finds_the_day_s_items_in_mosaic_order(settings):
    scene = plan_scene("earth-search", S2_REGION, "2024-06-01", settings, bands=BANDS)
    assert [i.id for i in scene.items] == [A, B]  # eo:cloud_cover ascending
    assert scene.items[0].hrefs["blue"] == (
        "s3://sentinel-cogs/sentinel-s2-l2a-cogs/19/F/FM/2024/6/S2B_19FFM_20240601_0_L2A/B02.tif"
    )
    assert scene.items[0].hrefs["mask"].endswith("/SCL.tif")
    assert scene.describe()["items"][1] == {
        "id": B,
        "datetime": "2024-06-01T14:47:19Z",
        "cloud_cover": 35.0,
        "crs": "EPSG:32719",
        "dn_offset": [1000],
    }
    assert scene.spec.bands == tuple(BANDS) and scene.spec.resolution == 10.0 and scene.spec.nodata == 0
    assert [i.id for i in plan_scene("earth-search", S2_REGION, "2024-06-01", settings, max_cloud=20).items] == [A]
    assert repr(pickle.loads(pickle.dumps(scene))) == repr(scene)  # travels to workers as is


def test_search_finding_nothing_says_what_was_asked(settings):
    with pytest.raises(NoItemsError) as err:
        plan_scene("earth-search", S2_REGION, "2024-06-02", settings)
    message = str(err.value)
    assert "'sentinel-2-l2a'" in message and "on 2024-06-02" in message and "eo:cloud_cover <= 100" in message
    assert "(600320.0, 4698240.0, 601600.0, 4699520.0) in EPSG:32719" in message and "-67.659" in message
    with pytest.raises(NoItemsError, match=r"on 2024-06-01 with eo:cloud_cover <= 5 \(2 found above the cloud limit\)"):
        plan_scene("earth-search", S2_REGION, "2024-06-01", settings, max_cloud=5)
    far = S2_REGION.__class__("far-away", (200000.0, 4698240.0, 201280.0, 4699520.0), "EPSG:32719")
    with pytest.raises(NoItemsError, match="on 2024-06-01"):
        plan_scene("earth-search", far, "2024-06-01", settings)


# --- harmonisation and masks ----------------------------------------------------------------


@pytest.mark.parametrize(
    "date, why",
    [
        ("2024-06-01", "baseline 05.00: the DN carry +1000, subtracted once"),
        ("2021-06-01", "baseline 03.00: no offset"),
        ("2023-06-01", "earthsearch:boa_offset_applied: already subtracted, whatever raster:bands says"),
    ],
)
def test_harmonised_pixels_equal_the_sample_exactly(settings, date, why):
    scene = plan_scene("earth-search", S2_REGION, date, settings, bands=BANDS, max_cloud=20)
    assert len(scene.items) == 1
    for tile in tiles(S2_REGION, 10.0):
        win = scene.read(tile.bounds, BANDS)
        expected = _sample(tile.bounds)
        assert win.data.dtype == np.uint16 and win.data.shape == (4, 64, 64)
        assert win.valid.mean() > 0.8, why
        np.testing.assert_array_equal(win.data[:, win.valid], expected[:, win.valid], err_msg=why)
        assert (win.data[:, ~win.valid] == 0).all()  # no data stays 0


def test_scl_cloud_and_nodata_masks(settings, catalogues):
    scene = plan_scene("earth-search", S2_REGION, "2024-06-01", settings, bands=BANDS, max_cloud=20)
    seen = set()
    for tile in tiles(S2_REGION, 10.0):
        win = scene.read(tile.bounds, BANDS)
        scl = window(*local(catalogues["earth-search"], A, "scl")[:2], tile.bounds, 10.0)  # 20 m, repeated
        np.testing.assert_array_equal(win.valid, scl != 0)
        np.testing.assert_array_equal(win.cloud, np.isin(scl, [3, 8, 9, 10]))
        seen |= set(np.unique(scl).tolist())
    assert {0, 3, 4, 8, 9, 10} <= seen  # every class the rule names occurs in the test data


def test_two_overlapping_items_are_mosaicked_by_the_documented_rule(settings, catalogues):
    scene = plan_scene("earth-search", S2_REGION, "2024-06-01", settings, bands=BANDS)
    cases = np.zeros(5, dtype=int)
    for tile in tiles(S2_REGION, 10.0):
        win = scene.read(tile.bounds, BANDS)
        layers = [s2_layer(catalogues["earth-search"], i, tile.bounds, 1000) for i in (A, B)]
        data, valid, cloud, index = mosaic(layers)
        np.testing.assert_array_equal(win.data, data)
        np.testing.assert_array_equal(win.valid, valid)
        np.testing.assert_array_equal(win.cloud, cloud)
        # A's pixels are the sample exactly; B's were stored 100 DN brighter.
        sample = _sample(tile.bounds)
        np.testing.assert_array_equal(win.data[:, valid & (index == 0)], sample[:, valid & (index == 0)])
        np.testing.assert_array_equal(win.data[:, valid & (index == 1)], sample[:, valid & (index == 1)] + 100)
        (av, ac), (bv, bc) = [(layer[1], layer[2]) for layer in layers]
        cases += [
            (av & ~ac).sum(),  # A clear: A
            (av & ac & bv & ~bc).sum(),  # A cloudy, B clear: B
            (av & ac & bv & bc).sum(),  # both cloudy: A, marked cloud
            (~av & bv & bc).sum(),  # A no data, B cloudy: B, marked cloud
            (~av & ~bv).sum(),  # neither: no data
        ]
    assert (cases > 0).all(), cases  # the test data exercise every branch of the rule


def test_an_item_in_another_crs_is_warped_onto_the_tile_grid(settings, catalogues):
    scene = plan_scene("earth-search", S2_REGION, "2022-06-01", settings, bands=BANDS)
    assert [i.crs for i in scene.items] == ["EPSG:32720"]
    # The resampling is recorded with the scene: reflectance bilinear, quality masks nearest.
    assert scene.describe()["reprojected"] == [scene.items[0].id]
    assert scene.describe()["resampling"] == {"reflectance": "bilinear", "mask": "nearest"}
    for tile in tiles(S2_REGION, 10.0):
        win = scene.read(tile.bounds, BANDS)
        data, valid, cloud, _ = mosaic([s2_layer(catalogues["earth-search"], scene.items[0].id, tile.bounds, 1000)])
        # GDAL's warper approximates the transform per chunk: bilinear values agree to a few DN.
        both = win.valid & valid
        assert both.mean() > 0.75 and (win.valid != valid).mean() < 0.01  # SCL marks some no data
        np.testing.assert_allclose(win.data[:, both], data[:, both], rtol=0.03)
        assert (win.cloud == cloud)[both].mean() > 0.99
        # Nearest there (the provider), bilinear back: close to the sample's own pixels, not shifted.
        error = np.abs(win.data.astype(float) - _sample(tile.bounds))[:, win.valid]
        assert np.median(error) < 0.05 * np.median(_sample(tile.bounds)), np.median(error)
    # A same-CRS scene on the lattice is copied, and says nothing about resampling.
    assert "resampling" not in plan_scene("earth-search", S2_REGION, "2024-06-01", settings, bands=BANDS).describe()


def test_landsat_scale_offset_qa_and_band_names(settings, catalogues):
    scene = plan_scene("landsat-c2", L8_REGION, "2020-05-18", settings, bands=BANDS)
    ids = [i.id for i in scene.items]
    assert ids == ["LC08_L2SP_224078_20200518_20200820_02_T1", "LC08_L2SP_224077_20200518_20200820_02_T1"]
    assert scene.items[0].hrefs["nir"] == (  # the s3 alternate of Landsat Look's https href
        "s3://usgs-landsat/collection02/level-2/standard/oli-tirs/2020/224/078/LC08_L2SP_224078_20200518_20200820_02_T1/"
        "LC08_L2SP_224078_20200518_20200820_02_T1_SR_B5.TIF"
    )
    assert scene.spec.resolution == 30.0
    from_second = 0
    for tile in tiles(L8_REGION, 30.0):
        win = scene.read(tile.bounds, BANDS)
        layers = [landsat_layer(catalogues["landsat-c2"], i, tile.bounds) for i in ids]
        data, valid, cloud, index = mosaic(layers)
        np.testing.assert_array_equal(win.data, data)
        np.testing.assert_array_equal(win.valid, valid)
        np.testing.assert_array_equal(win.cloud, cloud)
        from_second += (valid & (index == 1)).sum()
    assert from_second > 0


def test_landsat_reflectance_convention():
    dn = np.array([0, 1, 7272, 7273, 10000, 43636, 65535], dtype=np.uint16)
    assert stac.to_reflectance("landsat", dn).tolist() == [0, 1, 1, 1, 750, 10000, 16022]
    assert stac.to_reflectance("sentinel-2", np.array([0, 1, 999, 1000, 1001, 3041], np.uint16), 1000).tolist() == [
        0,
        1,
        1,
        1,
        1,
        2041,
    ]


@pytest.mark.parametrize(
    "properties, raster, offset",
    [
        ({"s2:processing_baseline": "05.00"}, None, 1000),
        (
            {"s2:processing_baseline": "04.00", "earthsearch:boa_offset_applied": False},
            {"offset": -0.1, "scale": 1e-4},
            1000,
        ),
        (
            {"s2:processing_baseline": "05.09", "earthsearch:boa_offset_applied": True},
            {"offset": -0.1, "scale": 1e-4},
            0,
        ),
        ({"s2:processing_baseline": "03.01"}, {"offset": -0.1, "scale": 1e-4}, 0),
        (
            {"s2:processing_baseline": "04.00"},
            {"offset": 0.0, "scale": 1e-4},
            1000,
        ),  # baseline decides that there is one
        ({"s2:processing_baseline": "05.10"}, {"offset": -0.2, "scale": 1e-4}, 2000),  # raster:bands gives its size
        ({}, {"offset": -0.1, "scale": 1e-4}, 1000),
        ({}, None, 0),
    ],
)
def test_s2_offset_rule(properties, raster, offset):
    asset = {"raster:bands": [raster]} if raster else {}
    assert stac.s2_dn_offset(properties, asset) == offset


# --- errors ---------------------------------------------------------------------------------


def _read_all(scene):
    for tile in tiles(S2_REGION, 10.0):
        scene.read(tile.bounds, BANDS)


def test_missing_object_is_named(settings):
    scene = plan_scene("earth-search", S2_REGION, "2020-06-01", settings, bands=BANDS)
    href = "s3://sentinel-cogs/sentinel-s2-l2a-cogs/19/F/FM/2020/6/S2B_19FFM_20200601_0_L2A/B08.tif"
    with pytest.raises(ObjectMissingError, match=f"^{href}: object not found"):
        _read_all(scene)


def test_truncated_cog_is_named(settings):
    scene = plan_scene("earth-search", S2_REGION, "2020-06-02", settings, bands=BANDS)
    with pytest.raises(CorruptObjectError, match=r"S2B_19FFM_20200602_0_L2A/B03\.tif: corrupt or truncated GeoTIFF"):
        _read_all(scene)


def test_item_without_a_band_asked_for(settings):
    with pytest.raises(
        ItemMismatchError,
        match=r"STAC item 'S2B_19FFM_20200603_0_L2A' .* has no asset 'nir' \(band nir\).*its assets: blue, green, red, scl",
    ):
        plan_scene("earth-search", S2_REGION, "2020-06-03", settings, bands=BANDS)
    # The same item serves the bands it has.
    scene = plan_scene("earth-search", S2_REGION, "2020-06-03", settings, bands=["red"])
    assert scene.read(tiles(S2_REGION, 10.0)[0].bounds, ["red"]).valid.any()


def test_item_whose_cog_is_not_in_its_declared_crs(settings):
    scene = plan_scene("earth-search", S2_REGION, "2020-06-04", settings, bands=BANDS)
    with pytest.raises(
        ItemMismatchError,
        match=r"S2B_19FFM_20200604_0_L2A/SCL\.tif: the COG is in EPSG:32720, but its STAC item declares EPSG:32719",
    ):
        _read_all(scene)


def test_unknown_band_for_a_stac_source(settings):
    with pytest.raises(ValueError, match=r"unknown band\(s\) \['thermal'\] for source 'earth-search'"):
        plan_scene("earth-search", S2_REGION, "2024-06-01", settings, bands=["thermal"])


def test_retry_policy_retries_transient_statuses_only():
    retry = stac.HttpRetry(retries=3).urllib3()
    assert all(retry.is_retry("POST", status) for status in (429, 500, 502, 503, 504))
    assert not any(retry.is_retry("POST", status) for status in (400, 401, 403, 404, 422))
    assert stac.HttpRetry(retries=3, backoff_s=0.5).gdal()["GDAL_HTTP_RETRY_CODES"] == "429,500,502,503,504"


HOSTILE_HREFS = [
    "/etc/passwd",
    "file:///etc/passwd",
    "../../../etc/passwd",
    "/vsicurl/http://169.254.169.254/latest/meta-data/",
    "/vsimem/x.tif",
    "gs://another-bucket/x.tif",  # a scheme the sources do not read
    "http://169.254.169.254/latest/meta-data/",  # a link-local address: a cloud's metadata service
    "http://2852039166/latest/meta-data/",  # the same address as one integer
    "http://[::ffff:169.254.169.254]/latest/meta-data/",  # and IPv4-mapped
    "http://metadata.google.internal/computeMetadata/v1/",
]


def test_a_stac_api_whose_items_point_outside_remote_storage_is_refused_naming_the_href(
    settings, catalogues, workdir, tmp_path
):
    """A STAC API chooses what the worker reads: its hrefs are read only as s3:// or http(s):// objects, and not
    from a link-local address. A local path, file://, a relative path, a GDAL virtual file system (/vsicurl/ to
    any URL, /vsimem/) or a metadata service's address is refused at planning, before any read, naming the
    item, the asset and the href."""
    import dataclasses
    import json

    from devtools.emulators.stac import stac_api

    for href in HOSTILE_HREFS:
        items = json.loads(json.dumps(catalogues["earth-search"].items))  # a deep copy
        for item in items:
            for asset in item["assets"].values():
                asset["href"] = href
                asset.pop("alternate", None)
        path = tmp_path / "hostile-items.json"
        path.write_text(json.dumps({"type": "FeatureCollection", "features": items}))
        with stac_api(workdir, [path]) as url:
            hostile = dataclasses.replace(settings, stac_urls={**settings.stac_urls, "earth-search": url})
            with pytest.raises(
                ItemMismatchError, match="only s3:// and http\\(s\\):// hrefs are read|link-local"
            ) as refused:
                plan_scene("earth-search", S2_REGION, "2024-06-01", hostile, bands=BANDS)
        assert repr(href) in str(refused.value) and "STAC item 'S2" in str(refused.value), refused.value
