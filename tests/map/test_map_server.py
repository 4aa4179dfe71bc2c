"""The map server over HTTP, as the page and a user's tools ask it: prediction tiles in the legend's
colours where the stored COG says so, imagery in true and false colour, the difference of two dates,
the class at a place; from local files, an S3 server and a GCS server. And what it refuses: paths, URIs and
other buckets in every parameter, zooms out of bounds, writes, floods; every refusal a 4xx with one
message, never a stack trace."""

from __future__ import annotations

import io

import morecantile
import numpy as np
import pytest
import rasterio
import requests
from map_world import DATE2
from PIL import Image
from pyproj import Transformer
from tiny_world import DATE, MODEL, TINY

from geo_assets.geo.landcover import CLASSES, COLOURS, IGNORE

TMS = morecantile.tms.get("WebMercatorQuad")
ZOOM = 16


@pytest.fixture(params=["local", "s3", "gcs"])
def served(request):
    return request.getfixturevalue(f"{request.param}_map")


def _png(response: requests.Response) -> np.ndarray:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    return np.asarray(Image.open(io.BytesIO(response.content)).convert("RGBA"))


def _predictions(server, date=DATE) -> dict:
    folder = f"manifests/predictions/{MODEL}/{server.version}/region={TINY.name}/date={date}"
    return server.store.read_json(server.store.list(folder)[0])


def _ground_points(n: int = 12) -> list[tuple[float, float]]:
    """Points inside tiny-field, away from its edges, as (easting, northing)."""
    rng = np.random.default_rng(7)
    minx, miny, maxx, maxy = TINY.bbox
    return [
        (float(x), float(y)) for x, y in zip(rng.uniform(minx + 40, maxx - 40, n), rng.uniform(miny + 40, maxy - 40, n))
    ]


def _pixel(lon: float, lat: float, z: int) -> tuple[morecantile.Tile, int, int]:
    tile = TMS.tile(lon, lat, z)
    b = TMS.xy_bounds(tile)
    x, y = Transformer.from_crs("EPSG:4326", "EPSG:3857", always_xy=True).transform(lon, lat)
    return tile, int((x - b.left) / (b.right - b.left) * 256), int((b.top - y) / (b.top - b.bottom) * 256)


def test_prediction_tiles_and_class_at_ground_points(served):
    """At each ground point, the tile's pixel has the colour of the class the stored mosaic holds there,
    and /api/class names that class."""
    manifest = _predictions(served)
    to_lonlat = Transformer.from_crs(TINY.crs, "EPSG:4326", always_xy=True)
    with served.store.env(), rasterio.open(served.store.path(manifest["mosaic"])) as src:
        checked = 0
        for e, n in _ground_points():
            expected = next(src.sample([(e, n)]))[0]
            row, col = src.index(e, n)
            window = src.read(1)[max(row - 1, 0) : row + 2, max(col - 1, 0) : col + 2]
            if expected == IGNORE or (window != expected).any():
                continue  # a class boundary within a pixel: resampling may fall either side
            lon, lat = to_lonlat.transform(e, n)
            tile, px, py = _pixel(lon, lat, ZOOM)
            image = _png(
                requests.get(
                    f"{served.url}/tiles/predictions/{TINY.name}/{DATE}/{MODEL}/{served.version}/"
                    f"{ZOOM}/{tile.x}/{tile.y}.png",
                    timeout=30,
                )
            )
            assert tuple(image[py, px]) == (*COLOURS[expected], 255), (e, n, CLASSES[expected])
            answer = requests.get(
                f"{served.url}/api/class",
                timeout=30,
                params={
                    "region": TINY.name,
                    "date": DATE,
                    "model": MODEL,
                    "version": served.version,
                    "lon": lon,
                    "lat": lat,
                },
            ).json()
            assert answer["class"] == CLASSES[expected]
            checked += 1
    assert checked >= 6, "too few ground points away from class boundaries"


def _centre() -> tuple[float, float]:
    return Transformer.from_crs(TINY.crs, "EPSG:4326", always_xy=True).transform(
        (TINY.bbox[0] + TINY.bbox[2]) / 2, (TINY.bbox[1] + TINY.bbox[3]) / 2
    )


def _centre_tile(z: int = ZOOM) -> morecantile.Tile:
    return TMS.tile(*_centre(), z)


def test_imagery_true_and_false_colour(served):
    """Both composites cover the region's inside, stretched (not flat), and differ from each other;
    a tile far from the region has no imagery (404)."""
    t = _centre_tile()
    images = {
        c: _png(requests.get(f"{served.url}/tiles/imagery/{TINY.name}/{DATE}/{c}/{ZOOM}/{t.x}/{t.y}.png", timeout=30))
        for c in ("true-colour", "false-colour")
    }
    for image in images.values():
        assert (image[..., 3] == 255).mean() > 0.5
        assert image[..., :3].std() > 10  # a stretch, not a black or white square
    assert np.abs(images["true-colour"][..., :3].astype(int) - images["false-colour"][..., :3]).mean() > 5
    far = TMS.tile(-60.0, -30.0, ZOOM)
    response = requests.get(
        f"{served.url}/tiles/imagery/{TINY.name}/{DATE}/true-colour/{ZOOM}/{far.x}/{far.y}.png", timeout=30
    )
    assert response.status_code == 404 and "no imagery" in response.json()["error"]


def test_difference_of_two_dates(local_map):
    """Opaque exactly where the two dates' class tiles differ, in the colour of the class it became."""
    server, t = local_map, _centre_tile(15)
    base = f"{server.url}/tiles/predictions/{TINY.name}"
    now = _png(requests.get(f"{base}/{DATE}/{MODEL}/{server.version}/15/{t.x}/{t.y}.png", timeout=30))
    before = _png(requests.get(f"{base}/{DATE2}/{MODEL}/{server.version}/15/{t.x}/{t.y}.png", timeout=30))
    diff = _png(
        requests.get(
            f"{server.url}/tiles/difference/{TINY.name}/{DATE}/{MODEL}/{server.version}/15/{t.x}/{t.y}.png",
            params={"against_date": DATE2},
            timeout=30,
        )
    )
    both = (now[..., 3] == 255) & (before[..., 3] == 255)
    changed = both & (now[..., :3] != before[..., :3]).any(axis=-1)
    assert changed.any() and (both & ~changed).any(), "the two dates should differ in part: pick other dates"
    assert ((diff[..., 3] == 255) == changed).all()
    assert (diff[changed][:, :3] == now[changed][:, :3]).all()
    same = _png(
        requests.get(
            f"{server.url}/tiles/difference/{TINY.name}/{DATE}/{MODEL}/{server.version}/15/{t.x}/{t.y}.png",
            params={"against_date": DATE},
            timeout=30,
        )
    )
    assert (same[..., 3] == 0).all()


def test_view_describes_the_layers(local_map):
    view = requests.get(
        f"{local_map.url}/api/view",
        timeout=30,
        params={"region": TINY.name, "date": DATE, "model": MODEL, "version": local_map.version, "against_date": DATE2},
    ).json()
    assert view["footprint"]["type"] == "Polygon"
    assert len(view["grid"]["features"]) == 4  # 2 x 2 tiles of 64 px
    assert set(view["imagery"]["layers"]) == {"true-colour", "false-colour"}
    assert [entry["class"] for entry in view["legend"]] == list(CLASSES)
    assert view["predictions"]["model"]["version"] == local_map.version
    assert "difference" in view
    legend = requests.get(f"{local_map.url}/api/legend", timeout=30).json()
    assert legend[0] == {"value": 0, "class": CLASSES[0], "colour": "#{:02x}{:02x}{:02x}".format(*COLOURS[0])}


def test_tilejson_names_each_layers_tiles_at_the_public_address(local_map):
    """TileJSON for other map clients: the region's bounds, the zoom range, and a tile template at the
    server's public address (GEO_ASSETS_MAP_URL) that serves the same tiles as the map page's."""
    good = {"region": TINY.name, "date": DATE, "model": MODEL, "version": local_map.version}
    t, (lon, lat) = _centre_tile(), _centre()
    for layer, path in (
        ("predictions", f"/tiles/predictions/{TINY.name}/{DATE}/{MODEL}/{local_map.version}/"),
        ("false-colour", f"/tiles/imagery/{TINY.name}/{DATE}/false-colour/"),
    ):
        doc = requests.get(f"{local_map.url}/api/tilejson.json", params={**good, "layer": layer}, timeout=30).json()
        assert doc["tilejson"] == "3.0.0" and doc["scheme"] == "xyz" and (doc["minzoom"], doc["maxzoom"]) == (6, 22)
        west, south, east, north = doc["bounds"]
        assert west < lon < east and south < lat < north and east - west < 0.05, doc["bounds"]
        (template,) = doc["tiles"]
        assert template.startswith(local_map.url + path), template
        url = template.replace("{z}", str(ZOOM)).replace("{x}", str(t.x)).replace("{y}", str(t.y))
        via_tilejson = _png(requests.get(url, timeout=30))
        direct = _png(requests.get(f"{local_map.url}{path}{ZOOM}/{t.x}/{t.y}.png", timeout=30))
        assert (via_tilejson == direct).all()
    missing = requests.get(
        f"{local_map.url}/api/tilejson.json",
        params={"region": TINY.name, "date": DATE, "layer": "predictions"},
        timeout=30,
    )
    assert missing.status_code == 400 and "name a model and version" in missing.json()["error"]


# -- what it refuses

HOSTILE = [
    "../../../etc/passwd",
    "..",
    "%2e%2e",
    "file:///etc/passwd",
    "/vsicurl/http://127.0.0.1:9/x.tif",
    "s3://geo-assets-other/secret.tif",
    "/vsis3/geo-assets-other/secret.tif",
    "gs://other/x",
    "/etc/passwd",
    "tiny-field/../../x",
    "tiny-field\x00",
    "TINY-FIELD",
]


def _urls(server) -> dict[str, tuple[str, dict]]:
    """Every route, its good parameters: each is then replaced by a hostile value in turn."""
    t = _centre_tile()
    good = {"region": TINY.name, "date": DATE, "model": MODEL, "version": server.version}
    return {
        "view": ("/api/view", {**good, "against_date": DATE2}),
        "tilejson": ("/api/tilejson.json", {**good, "layer": "predictions"}),
        "class": ("/api/class", {**good, "lon": _centre()[0], "lat": _centre()[1]}),
        "imagery": (
            "/tiles/imagery/{region}/{date}/{composite}/{z}/{x}/{y}.png",
            {
                "region": TINY.name,
                "date": DATE,
                "composite": "true-colour",
                "z": ZOOM,
                "x": t.x,
                "y": t.y,
                "variant": "synthetic-64px-blue-green-red-nir",
            },
        ),
        "predictions": (
            "/tiles/predictions/{region}/{date}/{model}/{version}/{z}/{x}/{y}.png",
            {**good, "z": ZOOM, "x": t.x, "y": t.y},
        ),
        "difference": (
            "/tiles/difference/{region}/{date}/{model}/{version}/{z}/{x}/{y}.png",
            {**good, "z": ZOOM, "x": t.x, "y": t.y, "against_date": DATE2, "against_version": server.version},
        ),
    }


def _get(server, route: str, values: dict) -> requests.Response:
    path_names = [
        n for n in ("region", "date", "composite", "model", "version", "z", "x", "y") if "{" + n + "}" in route
    ]
    path = route.format(**{n: requests.utils.quote(str(values[n]), safe="") for n in path_names})
    query = {k: v for k, v in values.items() if k not in path_names}
    return requests.get(server.url + path, params=query, timeout=30)


def test_every_route_answers_its_good_request(served):
    for name, (route, values) in _urls(served).items():
        response = _get(served, route, values)
        assert response.status_code == 200, (name, response.text)


@pytest.mark.parametrize("hostile", HOSTILE)
def test_no_parameter_reaches_storage_or_gdal(served, hostile):
    """Each parameter of each route in turn holds a path, a URI or another bucket: a 4xx naming the
    problem, never a 200, a 500 or a trace."""
    for name, (route, values) in _urls(served).items():
        for param in values:
            response = _get(served, route, {**values, param: hostile})
            assert 400 <= response.status_code < 500, (name, param, response.status_code, response.text[:300])
            assert "Traceback" not in response.text and 'File "' not in response.text
            if response.headers.get("content-type", "").startswith("application/json"):
                assert response.json()["error"], (name, param)


def test_other_bucket_and_files_are_never_served(s3_map):
    """Nothing outside the storage root: not the other bucket's object, not a local file, not by static paths."""
    for path in (
        "/static/../../../etc/passwd",
        "/static/%2e%2e/%2e%2e/etc/passwd",
        "/static//etc/passwd",
        "/geo-assets-other/secret.tif",
        "/tiles/../../etc/passwd",
    ):
        response = requests.get(s3_map.url + path, timeout=30)
        assert response.status_code == 404, (path, response.status_code)
        assert "root:" not in response.text


def test_zoom_bounds_and_tile_indexes(local_map):
    base = f"{local_map.url}/tiles/predictions/{TINY.name}/{DATE}/{MODEL}/{local_map.version}"
    for z, x, y, message in (
        (2, 0, 0, "zoom 2 is out of bounds"),
        (23, 0, 0, "zoom 23 is out of bounds"),
        (10, 1024, 0, "does not exist"),
        (10, -1, 0, "does not exist"),
    ):
        response = requests.get(f"{base}/{z}/{x}/{y}.png", timeout=30)
        assert response.status_code == 400 and message in response.json()["error"], (z, x, y, response.text)
    response = requests.get(f"{base}/ten/0/0.png", timeout=30)
    assert response.status_code == 400 and "z" in response.json()["error"]


def test_no_write_endpoint(local_map):
    app_routes = [
        "/api/view",
        "/api/class",
        "/map",
        "/static/index.html",
        f"/tiles/predictions/{TINY.name}/{DATE}/{MODEL}/{local_map.version}/16/0/0.png",
    ]
    for path in app_routes:
        for method in ("POST", "PUT", "DELETE", "PATCH"):
            response = requests.request(method, local_map.url + path, data=b"x", timeout=30)
            assert response.status_code == 405, (method, path, response.status_code)


def test_unknown_things_are_404_with_their_name(local_map):
    cases = {
        "/api/view?region=nowhere&date=2024-06-01": "nowhere",
        f"/api/view?region={TINY.name}&date=2031-01-01": "2031-01-01",
        f"/api/view?region={TINY.name}&date={DATE}&model={MODEL}&version=0000deadbeef": "0000deadbeef",
    }
    for path, named in cases.items():
        response = requests.get(local_map.url + path, timeout=30)
        assert response.status_code == 404 and named in response.json()["error"], (path, response.text)
    response = requests.get(f"{local_map.url}/api/view?region={TINY.name}&date=2024-13-01", timeout=30)
    assert response.status_code == 400 and "not a calendar date" in response.json()["error"]


def test_request_rate_is_bounded(world, tmp_path):
    """A client past GEO_ASSETS_MAP_RATE requests per second (a burst of twice that) gets 429s that say so."""
    import os

    from map_world import ROOT, map_server

    store, _ = world
    env = {**os.environ, "GEO_ASSETS_STORAGE_ROOT": store.root, "GEO_ASSETS_MAP_RATE": "5", "PYTHONPATH": str(ROOT)}
    with map_server(env, tmp_path / "map.log") as url:
        codes = [requests.get(f"{url}/api/legend", timeout=30) for _ in range(30)]
        # A load balancer's health checks come from the addresses user traffic comes from: never limited.
        health = [requests.get(f"{url}/healthz", timeout=30).status_code for _ in range(30)]
    refused = [r for r in codes if r.status_code == 429]
    assert refused and codes[0].status_code == 200
    assert "GEO_ASSETS_MAP_RATE" in refused[0].json()["error"]
    assert set(health) == {200}, health
