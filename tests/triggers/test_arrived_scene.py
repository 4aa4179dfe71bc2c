"""imagery_tiles from an arrived scene: the run the sensor requests reads the COGs that landed, on a
local folder, S3 and GCS, with the STAC sources' harmonisation and cloud masks."""

import json

import dagster as dg
import numpy as np
import pytest
import rasterio
from trigger_stores import FARM

from devtools.arrivals import BANDS, write_scene
from geo_assets.assets.imagery import imagery_tiles
from geo_assets.cli.commands import register
from geo_assets.geo.acquisitions import pick_imagery
from geo_assets.geo.arrived_scenes import arrived_scene, region_from_item
from geo_assets.geo.regions import Region, add_region
from geo_assets.geo.stac import SCL_CLOUD, NoItemsError, to_reflectance
from geo_assets.partitions import region_date_key
from resources.compute import LocalPoolCompute
from resources.gate import ModelGate
from resources.imagery import ImageryResource
from resources.storage import ManifestIOManager, StorageResource

DATE = "2024-06-01"
FOLDER = f"incoming/{FARM.name}/{DATE}"


def storage_of(store) -> StorageResource:
    fields = {
        k: getattr(store, k)
        for k in ("endpoint_url", "region", "access_key_id", "secret_access_key", "anonymous", "project")
        if getattr(store, k, None) not in (None, False)
    }
    return StorageResource(root=store.root, **fields)


def materialise(store, instance, **config):
    storage = storage_of(store)
    resources = {
        "storage": storage,
        "compute": LocalPoolCompute(workers=2),
        "io_manager": ManifestIOManager(storage=storage),
        "imagery": ImageryResource(),
        "gate": ModelGate(),
    }
    return dg.materialize(
        [imagery_tiles],
        partition_key=region_date_key(FARM.name, DATE),
        resources=resources,
        instance=instance,
        run_config={"ops": {"imagery_tiles": {"config": {"tile_size": 64, **config}}}},
        raise_on_error=False,
    )


@pytest.fixture
def instance(any_store):
    add_region(any_store, FARM)
    with dg.instance_for_test() as inst:
        register(inst, regions=[FARM.name])
        yield inst


def expected(dn, scl, bounds):
    """One tile's reflectance and cloud mask, computed from the DN written (offset 1000 removed)."""
    c0, r0 = int((bounds[0] - FARM.bbox[0]) / 10), int((FARM.bbox[3] - bounds[3]) / 10)
    window = (slice(r0, r0 + 64), slice(c0, c0 + 64))
    full_scl = np.kron(scl, np.ones((2, 2), dtype=scl.dtype))[window]
    data = np.stack([to_reflectance("sentinel-2", dn[b][window], 1000) for b in BANDS])
    valid = (full_scl != 0) & (data != 0).all(axis=0)
    return np.where(valid, data, 0), np.isin(full_scl, SCL_CLOUD) & valid


def test_the_run_reads_the_scene_that_arrived(any_store, instance):
    dn, scl = write_scene(any_store, FOLDER, "S2A_T31_20240601_0", FARM.bbox, FARM.crs, date=DATE, seed=1)
    result = materialise(any_store, instance, arrivals=FOLDER)
    assert result.success
    manifest = pick_imagery(any_store, FARM.name, DATE)[1]
    (version,) = [o.version for o in any_store.scan(FOLDER)[0] if o.key.endswith(".json")]
    assert manifest["source"] == "earth-search"
    assert manifest["scene"]["arrivals"]["items"] == [[f"{FOLDER}/S2A_T31_20240601_0.json", version]]
    assert manifest["scene"]["arrivals"]["folder"] == FOLDER
    assert sorted(k for k, _ in manifest["scene"]["arrivals"]["assets"]) == sorted(
        o.key for o in any_store.scan(FOLDER)[0] if o.key.endswith(".tif")
    )
    assert [i["id"] for i in manifest["scene"]["items"]] == ["S2A_T31_20240601_0"]
    assert len(manifest["tiles"]) == 4
    for tile in manifest["tiles"]:
        data, cloud = expected(dn, scl, tile["bounds"])
        with any_store.env(), rasterio.open(any_store.path(tile["path"])) as src:
            assert np.array_equal(src.read(), data), tile["key"]
        with any_store.env(), rasterio.open(any_store.path(tile["cloud_path"])) as src:
            assert np.array_equal(src.read(1).astype(bool), cloud), tile["key"]
    run = instance.get_runs()[0]
    assert run.tags["geo-assets/arrivals-folder"] == FOLDER and run.tags["geo-assets/source"] == "earth-search"

    # A rewritten scene is another scene: another output path, its own pixels, the first kept.
    dn2, scl2 = write_scene(any_store, FOLDER, "S2A_T31_20240601_0", FARM.bbox, FARM.crs, date=DATE, seed=2)
    assert materialise(any_store, instance, arrivals=FOLDER).success
    second = pick_imagery(any_store, FARM.name, DATE)[1]
    assert second["prefix"] != manifest["prefix"] and any_store.exists(manifest["tiles"][0]["path"])
    tile = second["tiles"][0]
    with any_store.env(), rasterio.open(any_store.path(tile["path"])) as src:
        assert np.array_equal(src.read(), expected(dn2, scl2, tile["bounds"])[0])


def test_every_item_in_the_folder_makes_the_mosaic(tmp_path):
    from geo_assets.geo.store import Store, local_root

    store = Store(local_root(tmp_path))
    # Two items: the western half (less cloudy) and the whole box; the mosaic takes the western half first.
    west = (FARM.bbox[0], FARM.bbox[1], FARM.bbox[0] + 640, FARM.bbox[3])
    write_scene(store, FOLDER, "S2B_west", west, FARM.crs, date=DATE, seed=3, cloud=5.0)
    write_scene(store, FOLDER, "S2A_whole", FARM.bbox, FARM.crs, date=DATE, seed=4, cloud=40.0)
    scene = arrived_scene(store, FOLDER, FARM)
    assert [i["id"] for i in scene.describe()["items"]] == ["S2B_west", "S2A_whole"]
    assert [k for k, _ in scene.describe()["arrivals"]["items"]] == [
        f"{FOLDER}/S2A_whole.json",
        f"{FOLDER}/S2B_west.json",
    ]
    assert [i["id"] for i in arrived_scene(store, FOLDER, FARM, max_cloud=10).describe()["items"]] == ["S2B_west"]


def _item(store, key, **changes):
    write_scene(store, FOLDER, "S2A_x", FARM.bbox, FARM.crs, date=DATE)
    item = {**json.loads(store.read_bytes(f"{FOLDER}/S2A_x.json")), **changes}
    store.delete(f"{FOLDER}/S2A_x.json")
    store.write_bytes(key, json.dumps(item).encode())
    return item


@pytest.mark.parametrize(
    "change, error",
    [
        ({"type": "FeatureCollection"}, "is not a STAC item"),
        ({"collection": "sentinel-1-grd"}, "matches no collection with bands blue, green, red, nir"),
        ({"assets": {"red": {"href": "s3://elsewhere/B04.tif"}, "scl": {"href": "SCL.tif"}}}, "matches no collection"),
    ],
)
def test_items_that_cannot_be_read_are_refused_naming_them(tmp_path, change, error):
    from geo_assets.geo.store import Store, local_root

    store = Store(local_root(tmp_path))
    _item(store, f"{FOLDER}/bad.json", **change)
    with pytest.raises(ValueError, match=error) as info:
        arrived_scene(store, FOLDER, FARM)
    assert f"{FOLDER}/bad.json" in str(info.value)


def test_hrefs_outside_the_storage_and_other_refusals(tmp_path):
    from geo_assets.geo.store import Store, local_root

    store = Store(local_root(tmp_path))
    item = _item(store, f"{FOLDER}/a.json")
    for href in ("s3://sentinel-cogs/B04.tif", "../../../../../etc/passwd", "/etc/passwd"):
        assets = {**item["assets"], "red": {**item["assets"]["red"], "href": href}}
        store.write_bytes(f"{FOLDER}/a.json", json.dumps({**item, "assets": assets}).encode())
        with pytest.raises(ValueError, match="lies outside the storage root"):
            arrived_scene(store, FOLDER, FARM)
    store.write_bytes(f"{FOLDER}/a.json", b"not json")
    with pytest.raises(ValueError, match="is not JSON"):
        arrived_scene(store, FOLDER, FARM)
    with pytest.raises(NoItemsError, match="no STAC items"):
        arrived_scene(store, "incoming/arrival-farm/2024-06-02", FARM)
    store.write_bytes(f"{FOLDER}/a.json", json.dumps(item).encode())
    far = Region("far-farm", (500000.0, 5140480.0, 501280.0, 5141760.0), "EPSG:32631")
    with pytest.raises(NoItemsError, match="do not cover region 'far-farm'"):
        arrived_scene(store, FOLDER, far)
    with pytest.raises(NoItemsError, match="eo:cloud_cover <= 5"):
        arrived_scene(store, FOLDER, FARM, max_cloud=5)
    with pytest.raises(ValueError, match="source must be one of earth-search, landsat-c2, planetary-computer"):
        arrived_scene(store, FOLDER, FARM, source="synthetic")
    with pytest.raises(ValueError, match="matches no collection of source 'landsat-c2'"):
        arrived_scene(store, FOLDER, FARM, source="landsat-c2")


def test_a_folder_outside_the_storage_fails_before_any_read(tmp_path):
    from geo_assets.cli.demo import failure_message
    from geo_assets.geo.store import Store, local_root

    store = Store(local_root(tmp_path))
    add_region(store, FARM)
    with dg.instance_for_test() as instance:
        register(instance, regions=[FARM.name])
        result = materialise(store, instance, arrivals="../elsewhere")
    assert not result.success
    assert "invalid storage key '../elsewhere'" in failure_message(result)
    assert store.list("manifests") == [] and store.list("imagery") == []


def test_region_from_an_items_footprint(tmp_path):
    from geo_assets.geo.store import Store, local_root

    store = Store(local_root(tmp_path))
    write_scene(store, FOLDER, "S2A_x", FARM.bbox, FARM.crs, date=DATE)
    region = region_from_item(store, "new-farm", f"{FOLDER}/S2A_x.json")
    assert (region.name, region.crs, region.source) == ("new-farm", "EPSG:32631", "earth-search")
    assert np.allclose(region.bbox, FARM.bbox, atol=1.0)  # the lon/lat box back in its UTM zone
    with pytest.raises(ValueError, match="invalid region name"):
        region_from_item(store, "New Farm", f"{FOLDER}/S2A_x.json")
    item = json.loads(store.read_bytes(f"{FOLDER}/S2A_x.json"))
    item["properties"].pop("proj:code")
    store.write_bytes(f"{FOLDER}/S2A_x.json", json.dumps(item).encode())
    with pytest.raises(ValueError, match="declares no CRS"):
        region_from_item(store, "new-farm", f"{FOLDER}/S2A_x.json")
