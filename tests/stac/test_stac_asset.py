"""imagery_tiles materialised from Earth Search through dagster.materialize, against the real servers."""

from __future__ import annotations

import dagster as dg
import numpy as np
import pytest
import rasterio
from expect import mosaic, s2_layer
from stac_regions import ACCESS_KEY, S2_REGION, SECRET_KEY

from geo_assets.assets.imagery import imagery_tiles
from geo_assets.cli.commands import register
from geo_assets.geo.acquisitions import pick_imagery
from geo_assets.geo.regions import load_catalogue, save_catalogue
from geo_assets.geo.store import Store, local_root
from geo_assets.partitions import region_date_key
from resources.compute import LocalPoolCompute
from resources.gate import ModelGate
from resources.imagery import ImageryResource
from resources.storage import ManifestIOManager, StorageResource

A, B = "S2B_19FFM_20240601_0_L2A", "S2A_19FFM_20240601_1_L2A"


@pytest.fixture
def setup(tmp_path, s3, stac_urls):
    store = Store(local_root(tmp_path / "storage"))
    catalogue = load_catalogue(store)
    catalogue.add(S2_REGION)
    save_catalogue(store, catalogue)
    storage = StorageResource(root=store.root)
    resources = {
        "storage": storage,
        "compute": LocalPoolCompute(workers=2),
        "io_manager": ManifestIOManager(storage=storage),
        "gate": ModelGate(),  # imagery_tiles reads the model a run predicts with, to cut its bands
        "imagery": ImageryResource(
            earth_search_url=stac_urls["earth-search"],
            s3_endpoint_url=s3.endpoint_url,
            s3_region=s3.region,
            s3_no_sign=False,
            s3_access_key_id=ACCESS_KEY,
            s3_secret_access_key=SECRET_KEY,
            http_retries=2,
            http_backoff_s=0.05,
        ),
    }
    with dg.instance_for_test() as instance:
        register(instance, regions=[S2_REGION.name])
        yield store, resources, instance


def _run(setup, date, **config):
    store, resources, instance = setup
    return dg.materialize(
        [imagery_tiles],
        partition_key=region_date_key(S2_REGION.name, date),
        resources=resources,
        instance=instance,
        run_config={"ops": {"imagery_tiles": {"config": {"source": "earth-search", "tile_size": 64, **config}}}},
        raise_on_error=False,
    )


def test_imagery_tiles_from_earth_search(setup, catalogues):
    store, _, instance = setup
    result = _run(setup, "2024-06-01")
    assert result.success
    manifest = pick_imagery(store, S2_REGION.name, "2024-06-01")[1]
    assert manifest["source"] == "earth-search" and manifest["dtype"] == "uint16" and manifest["nodata"] == 0
    assert [i["id"] for i in manifest["scene"]["items"]] == [A, B]
    assert len(manifest["tiles"]) == 4
    for entry in manifest["tiles"]:
        bounds = tuple(entry["bounds"])
        data, valid, cloud, _ = mosaic([s2_layer(catalogues["earth-search"], i, bounds, 1000) for i in (A, B)])
        with rasterio.open(store.path(entry["path"])) as src:
            assert src.crs.to_string() == "EPSG:32719" and tuple(src.bounds) == bounds and src.nodata == 0
            np.testing.assert_array_equal(src.read(), data)
        with rasterio.open(store.path(entry["cloud_path"])) as src:
            np.testing.assert_array_equal(src.read(1), cloud.astype(np.uint8))
        assert entry["nodata_fraction"] == pytest.approx(1 - valid.mean(), abs=1e-6)
    meta = result.asset_materializations_for_node("imagery_tiles")[0].metadata
    assert [i["id"] for i in meta["scene"].value["items"]] == [A, B]
    assert instance.get_run_by_id(result.run_id).tags["geo-assets/source"] == "earth-search"

    # A cloud limit picks fewer items and writes elsewhere: the first output stays as it was.
    limited = _run(setup, "2024-06-01", max_cloud=20)
    assert limited.success
    manifest20 = pick_imagery(store, S2_REGION.name, "2024-06-01")[1]
    assert [i["id"] for i in manifest20["scene"]["items"]] == [A]
    assert manifest20["prefix"] != manifest["prefix"] and store.exists(manifest["tiles"][0]["path"])
    assert manifest20["prefix"].rsplit("-", 1)[0] == manifest["prefix"].rsplit("-", 1)[0]  # only the scene part differs


def test_a_date_without_items_fails_with_the_search_in_the_message(setup):
    result = _run(setup, "2024-06-02")
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    message = failure.event_specific_data.error.to_string()
    assert "no 'sentinel-2-l2a' items" in message and "on 2024-06-02" in message
