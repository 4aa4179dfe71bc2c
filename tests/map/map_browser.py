"""What the map's browser tests do on the page: wait for it and its tiles, find a place on the screen,
read the screenshot's pixels there, and the ground points where the stored predictions hold one class.
A module of its own: the page test and the Dagster UI test both use it."""

from __future__ import annotations

import io

import numpy as np
import rasterio
from PIL import Image
from pyproj import Transformer
from tiny_world import DATE, MODEL, TINY

from devtools.dagster_dev import ROOT
from geo_assets.geo.landcover import CLASSES, COLOURS, IGNORE

ARTIFACTS = ROOT / "test-artifacts" / "map"


def shot(page, name: str) -> np.ndarray:
    """A screenshot in test-artifacts/map/, as RGB pixels."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    data = page.screenshot(animations="disabled")
    (ARTIFACTS / f"{name}.png").write_bytes(data)
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def wait_ready(page) -> None:
    """Until the page has read its view (or failed, naming why), then until its tiles have loaded."""
    page.wait_for_function("document.body.dataset.state === 'ready' || document.body.dataset.state === 'error'")
    assert page.evaluate("document.body.dataset.state") == "ready", page.locator("#error").text_content()
    wait_for_tiles(page)


def wait_for_tiles(page) -> None:
    """Until every tile layer on the map has loaded its tiles."""
    page.wait_for_function("""() => {
        const m = window.geoMap && window.geoMap.map;
        if (!m) return false;
        let done = true;
        m.eachLayer(l => { if (l instanceof L.TileLayer && l.isLoading()) done = false; });
        return done;
    }""")
    page.wait_for_timeout(300)  # the last tile's fade-in (Leaflet's 200 ms)


def predictions_only(page) -> None:
    """Predictions fully opaque (the opacity slider, as a user drags it), the tile grid switched off."""
    page.locator("#opacity").fill("1")
    page.get_by_role("checkbox", name="Tile grid").uncheck()
    wait_for_tiles(page)


def screen_point(page, lon: float, lat: float) -> tuple[int, int]:
    """Where a place is in the page, in CSS pixels (the map's container point plus its offset)."""
    p = page.evaluate(
        """([lat, lon]) => {
        const m = window.geoMap.map, p = m.latLngToContainerPoint([lat, lon]), r = m.getContainer().getBoundingClientRect();
        return [p.x + r.left, p.y + r.top];
    }""",
        [lat, lon],
    )
    return round(p[0]), round(p[1])


def on_map(page, x: int, y: int) -> bool:
    """The map itself is at (x, y), not a control drawn over it."""
    return page.evaluate(
        """([x, y]) => { const e = document.elementFromPoint(x, y);
        return !!e && !!e.closest('#map') && !e.closest('.leaflet-control'); }""",
        [x, y],
    )


def _from_grid(offset: float, tile_m: float) -> float:
    """Metres from the nearest grid line, `offset` metres from the region's corner."""
    return abs((offset + tile_m / 2) % tile_m - tile_m / 2)


def known_points(
    server, date: str = DATE, n: int = 400, per_class: int = 8, region=TINY, tile_m: float = 640.0
) -> list[tuple[float, float, int]]:
    """(lon, lat, class) of ground points whose 5 x 5 pixel neighbourhood holds one class in the stored
    mosaic of `region` on `date`, away from the tile grid's lines (every `tile_m` metres from the
    region's corner, drawn over the map)."""
    folder = f"manifests/predictions/{MODEL}/{server.version}/region={region.name}/date={date}"
    manifest = server.store.read_json(server.store.list(folder)[0])
    to_lonlat = Transformer.from_crs(region.crs, "EPSG:4326", always_xy=True)
    rng = np.random.default_rng(3)
    west, south, east, top = region.bbox
    points = []
    with rasterio.open(server.store.path(manifest["mosaic"])) as src:
        classes = src.read(1)
        for _ in range(n):
            e = rng.uniform(west + 60, east - 60)
            north = rng.uniform(south + 60, top - 60)
            if min(_from_grid(e - west, tile_m), _from_grid(north - south, tile_m)) < 40:
                continue  # a grid line between tiles
            row, col = src.index(e, north)
            block = classes[row - 2 : row + 3, col - 2 : col + 3]
            if block.size == 25 and (block == block[0, 0]).all() and block[0, 0] != IGNORE:
                points.append((*to_lonlat.transform(e, north), int(block[0, 0])))
    return [p for c in range(len(CLASSES)) for p in [q for q in points if q[2] == c][:per_class]]  # each class seen


def close(colour, expected, tolerance: int = 3) -> bool:
    return all(abs(int(c) - int(e)) <= tolerance for c, e in zip(colour, expected))


def classes_shown(page, points: list[tuple[float, float, int]], pixels: np.ndarray) -> list[tuple[float, float, int]]:
    """The points on the map (not under a control) whose screenshot pixel has their class's colour, and
    asserts that every one of them does."""
    shown = [p for p in points if on_map(page, *screen_point(page, *p[:2]))]
    for lon, lat, cls in shown:
        x, y = screen_point(page, lon, lat)
        assert close(pixels[y, x], COLOURS[cls]), (lon, lat, CLASSES[cls], pixels[y, x].tolist())
    return shown
