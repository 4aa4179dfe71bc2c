"""The demo's held-out region on the map, in a real browser (Debian's Chromium, driven by Playwright) through
the real map server: `synth-holdout` is cut as the demo cuts it (its 10 km, all six bands, 256 px
tiles) and predicted by the world's model, which never saw it; the link its predictions'
materialisation carries opens a page with its layers and legend, whose prediction tiles decode, pixel
by pixel, to the classes of the stored mosaic, whose screenshot shows those classes' colours at known
ground points, and whose click names the class there. Screenshots land in test-artifacts/map/."""

from __future__ import annotations

import io
import re

import dagster as dg
import numpy as np
import pytest
import rasterio
from map_browser import classes_shown, known_points, predictions_only, screen_point, shot, wait_for_tiles, wait_ready
from PIL import Image
from pyproj import Transformer
from tiny_world import DATE, MODEL, resources_for

from geo_assets.cli.commands import register
from geo_assets.cli.demo import ALL_BANDS, HOLDOUT
from geo_assets.geo.landcover import CLASSES, COLOURS, IGNORE
from geo_assets.geo.regions import builtin_regions
from geo_assets.map.links import MAP_URL_ENV
from geo_assets.partitions import region_date_key
from resources.compute import LocalPoolCompute

REGION = builtin_regions()[HOLDOUT[0]]  # synth-holdout
TILE_M = 256 * 10.0  # the demo's tiles: 256 px of 10 m
LAYERS = [
    "Imagery, true colour",
    "Imagery, false colour (NIR, red, green)",
    "Predictions",
    "Region footprint",
    "Tile grid",
]


@pytest.fixture(scope="module")
def holdout(world, local_port) -> str:
    """synth-holdout's imagery (the demo's bands), predictions and report, materialised in the world's
    store with the world's model version; the map link of its predictions. In an instance of its own:
    the UI test reads the world's Dagster home, whose latest predictions must stay tiny-field's."""
    from geo_assets.assets.imagery import imagery_tiles
    from geo_assets.assets.predictions import predictions
    from geo_assets.assets.reports import region_report

    store, version = world
    assert REGION.name == "synth-holdout" and DATE in REGION.dates
    with pytest.MonkeyPatch.context() as env, dg.instance_for_test() as instance:
        env.setenv(MAP_URL_ENV, f"http://127.0.0.1:{local_port}")  # where the links point, as the world's
        register(instance, regions=[REGION.name], models=[MODEL])
        result = dg.materialize(
            [imagery_tiles, predictions, region_report],
            partition_key=region_date_key(REGION.name, DATE),
            resources=resources_for(store, LocalPoolCompute(workers=2)),
            instance=instance,
            run_config={
                "ops": {
                    "imagery_tiles": {"config": {"bands": ALL_BANDS}},
                    "predictions": {"config": {"model": MODEL, "version": version}},
                }
            },
        )
    assert result.success
    links = {
        e.step_materialization_data.materialization.asset_key.to_user_string(): (
            e.step_materialization_data.materialization.metadata["map"].url
        )
        for e in result.get_asset_materialization_events()
    }
    return links["predictions"]


def _mosaic(server) -> tuple[np.ndarray, rasterio.Affine]:
    folder = f"manifests/predictions/{MODEL}/{server.version}/region={REGION.name}/date={DATE}"
    manifest = server.store.read_json(server.store.list(folder)[0])
    with rasterio.open(server.store.path(manifest["mosaic"])) as src:
        assert src.crs.to_string() == REGION.crs
        return src.read(1), src.transform


def _decoded(body: bytes) -> tuple[np.ndarray, np.ndarray]:
    """A prediction tile's classes (-1: transparent) and whether every opaque pixel is a legend colour."""
    rgba = np.asarray(Image.open(io.BytesIO(body)).convert("RGBA")).astype(int)
    classes = np.full(rgba.shape[:2], -1)
    for value, colour in enumerate(COLOURS[: len(CLASSES)]):
        classes[(rgba[..., :3] == colour).all(axis=-1) & (rgba[..., 3] == 255)] = value
    return classes, (rgba[..., 3] == 0) | (classes >= 0)


def _expected(tile: tuple[int, int, int], classes: np.ndarray, transform, step: int = 4, half: int = 4):
    """(row, col, class) of a tile's pixels (every `step`th) whose ground holds one class in the stored
    mosaic over (2 half + 1)^2 pixels: what the tile must show there, whichever overview it was read from."""
    import morecantile

    z, x, y = tile
    bounds = morecantile.tms.get("WebMercatorQuad").xy_bounds(morecantile.Tile(x, y, z))
    to_region = Transformer.from_crs("EPSG:3857", REGION.crs, always_xy=True)
    rows, cols = np.mgrid[step // 2 : 256 : step, step // 2 : 256 : step]
    mx = bounds.left + (cols + 0.5) / 256 * (bounds.right - bounds.left)
    my = bounds.top - (rows + 0.5) / 256 * (bounds.top - bounds.bottom)
    e, n = to_region.transform(mx, my)
    mcol, mrow = ~transform * (e, n)
    out = []
    for r, c, i, j in zip(
        rows.ravel(), cols.ravel(), np.floor(mrow).astype(int).ravel(), np.floor(mcol).astype(int).ravel()
    ):
        if half <= i < classes.shape[0] - half and half <= j < classes.shape[1] - half:
            block = classes[i - half : i + half + 1, j - half : j + half + 1]
            if (block == block[half, half]).all() and block[half, half] != IGNORE:
                out.append((int(r), int(c), int(block[half, half])))
    return out


def test_the_held_out_regions_predictions_on_the_map(local_map, holdout, page):
    responses = []
    page.on("response", lambda response: responses.append(response))  # Playwright tags the handler: no bound method
    page.set_viewport_size({"width": 1600, "height": 1000})  # the whole region at the zoom it opens on
    page.goto(holdout)  # the link in its predictions' materialisation
    wait_ready(page)
    assert page.locator("#title").text_content() == f"{REGION.name}, {DATE}"
    assert local_map.version in page.locator("#model").text_content()

    # Its layers, and the legend: every class, each in its colour.
    assert [t.strip() for t in page.locator(".leaflet-control-layers label").all_text_contents()] == LAYERS
    assert [r.strip() for r in page.locator("#legend tr").all_text_contents()] == list(CLASSES)
    swatches = page.locator("#legend td.swatch").evaluate_all("cs => cs.map(c => getComputedStyle(c).backgroundColor)")
    assert swatches == [f"rgb({r}, {g}, {b})" for r, g, b in COLOURS[: len(CLASSES)]]

    # The prediction tiles the page loaded decode to the stored mosaic's classes, pixel by pixel.
    classes, transform = _mosaic(local_map)
    tiles = {}
    for response in responses:
        found = re.search(
            rf"/tiles/predictions/{REGION.name}/{DATE}/{MODEL}/[^/]+/(\d+)/(\d+)/(\d+)\.png", response.url
        )
        if found and response.status == 200:
            tiles[tuple(int(v) for v in found.groups())] = response.body()
    assert len(tiles) >= 4, [r.url for r in responses]
    checked, seen = 0, set()
    for tile, body in tiles.items():
        decoded, legend_only = _decoded(body)
        assert legend_only.all(), f"tile {tile}: pixels in no legend colour"
        for row, col, expected in _expected(tile, classes, transform):
            assert decoded[row, col] == expected, (tile, row, col, CLASSES[expected], decoded[row, col])
            checked, seen = checked + 1, seen | {expected}
    values, counts = np.unique(classes, return_counts=True)
    major = {int(v) for v, n in zip(values, counts) if v != IGNORE and n >= 0.02 * classes.size}
    assert checked >= 500 and len(major) >= 2 and major <= seen, (checked, seen, major)  # every class of 2 % or more

    # The screenshot: predictions opaque, the grid off; known ground points in their class's colour.
    predictions_only(page)
    points = classes_shown(
        page, known_points(local_map, region=REGION, tile_m=TILE_M), shot(page, "20-holdout-predictions")
    )
    assert len(points) >= 8 and len({c for *_, c in points}) >= 2, points

    # The false-colour imagery under it loads; a click names the class at a known point.
    page.get_by_role("radio", name=LAYERS[1]).check()
    wait_for_tiles(page)
    imagery = [r for r in responses if "/false-colour/" in r.url]
    assert imagery and all(r.status in (200, 404) for r in imagery) and any(r.status == 200 for r in imagery)
    lon, lat, cls = points[-1]
    page.mouse.click(*screen_point(page, lon, lat))
    page.locator("#clicked[data-answered]").wait_for()
    assert page.locator("#clicked").text_content().startswith(f"{CLASSES[cls]} at ")
    shot(page, "21-holdout-clicked")
