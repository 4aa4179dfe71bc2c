"""The map page in a real browser (Debian's Chromium, driven by Playwright), as a user uses it: open
the map of tiny-field's predictions, read the class colours at known ground points off the
screenshot's pixels, switch layers, change the opacity, click a pixel and read its class.
Screenshots land in test-artifacts/map/ (git-ignored)."""

from __future__ import annotations

import io

import numpy as np
import pytest
import rasterio
from PIL import Image
from pyproj import Transformer

from devtools import chromium, leaflet
from devtools.dagster_dev import ROOT
from geo_assets.geo.landcover import CLASSES, COLOURS, IGNORE
from geo_assets.map.links import map_url
from map_world import DATE2
from tiny_world import DATE, MODEL, TINY

ARTIFACTS = ROOT / "test-artifacts" / "map"


@pytest.fixture(scope="module")
def browser(local_map):
    """Chromium, headless; Leaflet fetched first (npm, integrity-checked) as `make map-page` does."""
    leaflet.install()
    with chromium.headless(chromium.install()) as browser:
        yield browser


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1200, "height": 800})
    context.set_default_timeout(60_000)
    page = context.new_page()
    yield page
    context.close()


def _shot(page, name: str) -> np.ndarray:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    data = page.screenshot(animations="disabled")
    (ARTIFACTS / f"{name}.png").write_bytes(data)
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def _wait_for_tiles(page) -> None:
    """Until every tile layer on the map has loaded its tiles."""
    page.wait_for_function("""() => {
        const m = window.geoMap && window.geoMap.map;
        if (!m) return false;
        let done = true;
        m.eachLayer(l => { if (l instanceof L.TileLayer && l.isLoading()) done = false; });
        return done;
    }""")
    page.wait_for_timeout(300)  # the last tile's fade-in (Leaflet's 200 ms)


def _screen_point(page, lon: float, lat: float) -> tuple[int, int]:
    """Where a place is in the page, in CSS pixels (the map's container point plus its offset)."""
    p = page.evaluate("""([lat, lon]) => {
        const m = window.geoMap.map, p = m.latLngToContainerPoint([lat, lon]), r = m.getContainer().getBoundingClientRect();
        return [p.x + r.left, p.y + r.top];
    }""", [lat, lon])
    return round(p[0]), round(p[1])


def _on_map(page, x: int, y: int) -> bool:
    """The map itself is at (x, y), not a control drawn over it."""
    return page.evaluate("""([x, y]) => { const e = document.elementFromPoint(x, y);
        return !!e && !!e.closest('#map') && !e.closest('.leaflet-control'); }""", [x, y])


def _known_points(local_map, n: int = 400, per_class: int = 8) -> list[tuple[float, float, int]]:
    """(lon, lat, class) of ground points whose 5 x 5 pixel neighbourhood holds one class in the stored
    mosaic, away from the tile grid's lines (drawn over the map)."""
    folder = f"manifests/predictions/{MODEL}/{local_map.version}/region={TINY.name}/date={DATE}"
    manifest = local_map.store.read_json(local_map.store.list(folder)[0])
    to_lonlat = Transformer.from_crs(TINY.crs, "EPSG:4326", always_xy=True)
    rng = np.random.default_rng(3)
    points = []
    with rasterio.open(local_map.store.path(manifest["mosaic"])) as src:
        classes = src.read(1)
        for _ in range(n):
            e = rng.uniform(TINY.bbox[0] + 60, TINY.bbox[2] - 60)
            north = rng.uniform(TINY.bbox[1] + 60, TINY.bbox[3] - 60)
            if min(abs(e - 400640.0), abs(north - 5120640.0)) < 40:  # the grid line between tiles
                continue
            row, col = src.index(e, north)
            block = classes[row - 2:row + 3, col - 2:col + 3]
            if block.size == 25 and (block == block[0, 0]).all() and block[0, 0] != IGNORE:
                points.append((*to_lonlat.transform(e, north), int(block[0, 0])))
    return [p for c in range(len(CLASSES)) for p in [q for q in points if q[2] == c][:per_class]]  # each class seen


def _close(colour, expected, tolerance: int = 3) -> bool:
    return all(abs(int(c) - int(e)) <= tolerance for c, e in zip(colour, expected))


def test_map_page_shows_classes_switches_layers_and_reads_a_click(local_map, page):
    url = map_url(TINY.name, DATE, MODEL, local_map.version, base=local_map.url) + f"&against_date={DATE2}"
    page.goto(url)
    page.wait_for_function("document.body.dataset.state === 'ready' || document.body.dataset.state === 'error'")
    assert page.evaluate("document.body.dataset.state") == "ready", page.locator("#error").text_content()
    _wait_for_tiles(page)
    # The panel: the model version, its evaluation line and the legend of every class.
    assert local_map.version in page.locator("#model").text_content()
    assert "Evaluation:" in page.locator("#model").text_content()
    assert [r.strip() for r in page.locator("#legend tr").all_text_contents()] == list(CLASSES)
    _shot(page, "01-opened")

    # Predictions fully opaque (the opacity slider, as a user drags it), the tile grid switched off.
    page.locator("#opacity").fill("1")
    page.get_by_role("checkbox", name="Tile grid").uncheck()
    _wait_for_tiles(page)
    shot = _shot(page, "02-predictions")
    points = [p for p in _known_points(local_map) if _on_map(page, *_screen_point(page, *p[:2]))]
    assert len(points) >= 8 and len({cls for _, _, cls in points}) >= 2, points
    for lon, lat, cls in points:
        x, y = _screen_point(page, lon, lat)
        assert _close(shot[y, x], COLOURS[cls]), (lon, lat, CLASSES[cls], shot[y, x].tolist())

    # Predictions off, false colour on: the same places now show imagery, not the palette.
    page.get_by_role("checkbox", name="Predictions", exact=True).uncheck()
    page.get_by_role("radio", name="Imagery, false colour (NIR, red, green)").check()
    _wait_for_tiles(page)
    shot = _shot(page, "03-false-colour")
    palette_hits = sum(any(_close(shot[y, x], c, 1) for c in COLOURS)
                       for x, y in (_screen_point(page, lon, lat) for lon, lat, _ in points))
    assert palette_hits < len(points) / 2

    # The class at a clicked pixel, as the panel and the popup say it.
    page.get_by_role("checkbox", name="Predictions", exact=True).check()
    common = max(set(c for _, _, c in points), key=[c for _, _, c in points].count)
    lon, lat, cls = next(p for p in points if p[2] != common)  # not the class most of the map shows
    x, y = _screen_point(page, lon, lat)
    page.mouse.click(x, y)
    page.locator("#clicked[data-answered]").wait_for()
    assert page.locator("#clicked").text_content().startswith(f"{CLASSES[cls]} at ")
    assert page.locator(".leaflet-popup-content").text_content().startswith(CLASSES[cls])
    _shot(page, "04-clicked")


def test_map_page_names_what_is_missing(local_map, page):
    page.goto(map_url(TINY.name, "2031-01-01", base=local_map.url))
    page.wait_for_function("document.body.dataset.state === 'error'")
    assert "no imagery_tiles of region 'tiny-field' on 2031-01-01" in page.locator("#error").text_content()


def test_map_page_without_leaflet_says_how_to_get_it(local_map, tmp_path, monkeypatch):
    """Where Leaflet was not fetched (no npm), /map says what it lacks and how to get it."""
    from fastapi.testclient import TestClient

    from geo_assets.map import app as map_app

    (tmp_path / "index.html").write_text("<html></html>")
    monkeypatch.setattr(map_app, "PAGE", tmp_path)
    response = TestClient(map_app.create_app(local_map.store)).get(f"/map?region={TINY.name}&date={DATE}")
    assert response.status_code == 503 and "make map-page" in response.json()["error"]
