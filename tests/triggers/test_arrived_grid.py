"""One grid rule for scenes that arrive: a Landsat Collection 2 scene (pixel corners on 15 + 30k m)
that lands in the storage is cut, by the run the scene_arrivals sensor launches through a real
`dagster-daemon run`, on its own lattice: every tile pixel is the source file's pixel, and the
region's labels (cut on the same lattice) pass the grid check training applies."""

import os
from datetime import UTC, datetime

import dagster as dg
import numpy as np
import rasterio
from daemon_process import Daemon, dagster_home, finished_ticks, wait_for

from devtools.arrivals import write_landsat_scene
from geo_assets.geo.acquisitions import pick_imagery
from geo_assets.geo.stac import QA_CLOUD, QA_FILL, to_reflectance
from geo_assets.geo.store import make_store
from geo_assets.ml.pairs import check_same_grid

TODAY = datetime.now(UTC).date().isoformat()
REGION = "landsat-farm"
# Inside the Landsat 8 sample clip (EPSG:32621), around two of its label polygons; not on any tile edge.
BBOX = (737400.0, -2810000.0, 744900.0, -2796000.0)
BANDS = {"blue": "blue", "green": "green", "red": "red", "nir": "nir08"}  # tile band -> Landsat asset


def test_an_arrived_landsat_scene_is_cut_on_its_own_pixels(tmp_path):
    home = dagster_home(tmp_path / "home", max_concurrent_runs=1)
    env = {
        **os.environ,
        "GEO_ASSETS_ARRIVALS_INTERVAL": "1",
        "GEO_ASSETS_ARRIVALS_SETTLE_SECONDS": "1",
        "DAGSTER_HOME": str(home),
        "GEO_ASSETS_STORAGE_ROOT": (tmp_path / "storage").as_uri(),
    }
    env.pop("GEO_ASSETS_PROFILE", None)
    store = make_store((tmp_path / "storage").as_uri())
    daemon = Daemon(env, tmp_path / "daemon.log")
    daemon.cli(
        "geo-assets",
        "region",
        "add",
        REGION,
        "--bbox",
        *map(str, BBOX),
        "--crs",
        "EPSG:32621",
        "--source",
        "landsat-c2",
        "--labels",
        "polygons",
    )
    daemon.cli("dagster", "sensor", "start", "scene_arrivals", "-w", "workspace.yaml")
    instance = dg.DagsterInstance.from_config(str(home))
    runs = lambda: instance.get_runs(dg.RunsFilter(tags={"dagster/sensor_name": "scene_arrivals"}))  # noqa: E731
    daemon.start()
    try:
        wait_for(lambda: finished_ticks(instance), 120, "the first tick to end", daemon)
        dn, transform, crs = write_landsat_scene(
            store, f"incoming/{REGION}/{TODAY}", "LC08_L2SP_224078_20200518_20200820_02_T1", date=TODAY
        )
        (run,) = wait_for(
            lambda: [r for r in runs() if r.is_finished], 240, "the arrival's run to finish", daemon, every=2
        )
    finally:
        daemon.stop()
    assert run.status == dg.DagsterRunStatus.SUCCESS, instance.all_logs(run.run_id)[-5:]
    _, imagery = pick_imagery(store, REGION, TODAY)  # the one variant the arrival cut
    assert (imagery["source"], imagery["crs"], imagery["origin"]) == ("landsat-c2", crs, [15.0, 15.0])
    assert "reprojected" not in imagery["scene"]  # same CRS, same lattice: nothing is resampled
    assert len(imagery["tiles"]) == 2

    qa = dn["qa_pixel"]
    for tile in imagery["tiles"]:
        left, bottom, right, top = tile["bounds"]
        col, row = (left - transform.c) / transform.a, (top - transform.f) / transform.e
        assert col == int(col) and row == int(row), (
            f"tile {tile['key']} is not on the scene's pixel corners: {tile['bounds']}"
        )
        window = (slice(int(row), int(row) + imagery["tile_size"]), slice(int(col), int(col) + imagery["tile_size"]))
        valid = ((qa[window] & QA_FILL) == 0) & np.all([dn[a][window] != 0 for a in BANDS.values()], axis=0)
        expected = np.stack([np.where(valid, to_reflectance("landsat", dn[a][window]), 0) for a in BANDS.values()])
        with rasterio.open(store.path(tile["path"])) as src:
            assert np.array_equal(src.read(), expected), tile["key"]
        with rasterio.open(store.path(tile["cloud_path"])) as src:
            assert np.array_equal(src.read(1).astype(bool), ((qa[window] & QA_CLOUD) != 0) & valid), tile["key"]

    # The region's labels, as a user materialises them, lie on the same grid: training pairs them.
    daemon.cli(
        "dagster", "asset", "materialize", "-m", "geo_assets.definitions", "--select", "labels", "--partition", REGION
    )
    labels = store.read_json(f"manifests/labels/{REGION}.json")
    check_same_grid(imagery, labels)
    assert [t["bounds"] for t in labels["tiles"]] == [t["bounds"] for t in imagery["tiles"]]
    assert any(t["labelled_fraction"] > 0 for t in labels["tiles"])
