"""The map page in a real browser (Debian's Chromium, driven by Playwright), as a user uses it: open
the map of tiny-field's predictions, read the class colours at known ground points off the
screenshot's pixels, switch layers, change the opacity, click a pixel and read its class.
Screenshots land in test-artifacts/map/ (git-ignored)."""

from __future__ import annotations

from map_browser import (
    classes_shown,
    close,
    known_points,
    predictions_only,
    screen_point,
    shot,
    wait_for_tiles,
    wait_ready,
)
from map_world import DATE2
from tiny_world import DATE, MODEL, TINY

from geo_assets.geo.landcover import CLASSES, COLOURS
from geo_assets.map.links import map_url


def test_map_page_shows_classes_switches_layers_and_reads_a_click(local_map, page):
    url = map_url(TINY.name, DATE, MODEL, local_map.version, base=local_map.url) + f"&against_date={DATE2}"
    page.goto(url)
    wait_ready(page)
    # The panel: the model version, its evaluation line and the legend of every class.
    assert local_map.version in page.locator("#model").text_content()
    assert "Evaluation:" in page.locator("#model").text_content()
    assert [r.strip() for r in page.locator("#legend tr").all_text_contents()] == list(CLASSES)
    shot(page, "01-opened")

    # Predictions fully opaque, the tile grid off: each known point in its class's colour.
    predictions_only(page)
    points = classes_shown(page, known_points(local_map), shot(page, "02-predictions"))
    assert len(points) >= 8 and len({cls for _, _, cls in points}) >= 2, points

    # Predictions off, false colour on: the same places now show imagery, not the palette.
    page.get_by_role("checkbox", name="Predictions", exact=True).uncheck()
    page.get_by_role("radio", name="Imagery, false colour (NIR, red, green)").check()
    wait_for_tiles(page)
    pixels = shot(page, "03-false-colour")
    palette_hits = sum(
        any(close(pixels[y, x], c, 1) for c in COLOURS)
        for x, y in (screen_point(page, lon, lat) for lon, lat, _ in points)
    )
    assert palette_hits < len(points) / 2

    # The class at a clicked pixel, as the panel and the popup say it.
    page.get_by_role("checkbox", name="Predictions", exact=True).check()
    common = max(set(c for _, _, c in points), key=[c for _, _, c in points].count)
    lon, lat, cls = next(p for p in points if p[2] != common)  # not the class most of the map shows
    x, y = screen_point(page, lon, lat)
    page.mouse.click(x, y)
    page.locator("#clicked[data-answered]").wait_for()
    assert page.locator("#clicked").text_content().startswith(f"{CLASSES[cls]} at ")
    assert page.locator(".leaflet-popup-content").text_content().startswith(CLASSES[cls])
    shot(page, "04-clicked")


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
