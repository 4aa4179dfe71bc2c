"""From the Dagster UI to the map, as a user goes: the real Dagster UI (`dagster-webserver` over the
Dagster home in which the map world's prediction was materialised, map_world.py) shows the
predictions' latest materialisation; its **map** link, in that materialisation's metadata, is
followed in the browser, and the map page it opens shows the prediction's classes at known ground
points. Screenshots land in test-artifacts/map/ (git-ignored)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from map_browser import classes_shown, known_points, predictions_only, shot, wait_ready
from map_world import LINKS
from tiny_world import DATE, MODEL, TINY

from devtools.dagster_dev import BIN, ROOT, graphql
from devtools.emulators import free_port, running

ASSETS = """{ assetNodes { assetKey { path } } }"""


@pytest.fixture(scope="module")
def dagster_ui(world, dagster_home, tmp_path_factory) -> Iterator[str]:
    """The Dagster UI over the world's Dagster home, on a free port; its base URL."""
    store, _ = world
    port = free_port()
    log = tmp_path_factory.mktemp("map-ui") / "webserver.log"
    env = {"DAGSTER_HOME": str(dagster_home), "GEO_ASSETS_STORAGE_ROOT": store.root, "GEO_ASSETS_MIN_MIOU": "0"}
    cmd = [BIN / "dagster-webserver", "-w", ROOT / "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)]
    with running(cmd, log, env, cwd=ROOT) as proc:
        url = f"http://127.0.0.1:{port}/graphql"
        deadline = time.monotonic() + 300  # the code location imports torch: a minute on a busy machine
        while True:
            try:
                if requests.post(url, json={"query": ASSETS}, timeout=10).json()["data"]["assetNodes"]:
                    break
            except (requests.RequestException, KeyError, TypeError, ValueError):
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the Dagster UI did not serve the code location: {log.read_text()[-3000:]}")
            time.sleep(1)
        graphql(url, "mutation { setNuxSeen }")  # the first visit's welcome dialog would cover the page
        yield url.removesuffix("/graphql")


def test_the_map_link_in_the_dagster_ui_opens_the_predictions_on_the_map(dagster_ui, local_map, page):
    page.set_viewport_size({"width": 1600, "height": 1000})
    page.goto(f"{dagster_ui}/assets/predictions")
    page.get_by_text(f"{DATE}|{TINY.name}").first.wait_for()  # the latest materialisation's partition
    row = page.locator("tr", has=page.get_by_text("map", exact=True))
    link = row.get_by_role("link", name=f"{local_map.url}/map?")  # the URL, shown (shortened) as the link's text
    link.wait_for()
    href = link.get_attribute("href")
    link.scroll_into_view_if_needed()
    shot(page, "10-dagster-ui-predictions")
    # The link the step wrote: this map server, this acquisition, this model version.
    assert href == LINKS["predictions"], href
    assert href.startswith(f"{local_map.url}/map?")
    assert parse_qs(urlsplit(href).query) == {
        "region": [TINY.name],
        "date": [DATE],
        "model": [MODEL],
        "version": [local_map.version],
    }

    # Followed as a user clicks it (the UI opens links of metadata in a new tab).
    with page.context.expect_page() as opened:
        link.click()
    map_page = opened.value
    map_page.set_viewport_size({"width": 1200, "height": 800})
    wait_ready(map_page)
    assert map_page.url == href
    assert local_map.version in map_page.locator("#model").text_content()
    predictions_only(map_page)
    points = classes_shown(map_page, known_points(local_map), shot(map_page, "11-map-from-dagster-ui"))
    assert len(points) >= 8 and len({cls for _, _, cls in points}) >= 2, points
