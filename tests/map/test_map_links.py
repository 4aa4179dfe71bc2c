"""Linked from where users are: every imagery_tiles, predictions and region_report materialisation
carries its map view's URL on the map server GEO_ASSETS_MAP_URL names (the world's materialisations
named the local map server's), `geo-assets map` prints the same, and that URL opens on the map server.
test_map_from_dagster_ui.py follows the link from the Dagster UI in a browser."""

from __future__ import annotations

import os
import subprocess
import sys
from urllib.parse import parse_qs, urlsplit

import requests
from map_world import LINKS
from tiny_world import DATE, MODEL, TINY

from geo_assets.map.links import DEFAULT_MAP_URL


def _cli(store, *args: str, **env: str) -> subprocess.CompletedProcess:
    environ = {**os.environ, "GEO_ASSETS_STORAGE_ROOT": store.root, "GEO_ASSETS_MIN_MIOU": "0", **env}
    return subprocess.run(
        [sys.executable, "-m", "geo_assets.cli", "map", *args], env=environ, capture_output=True, text=True, timeout=120
    )


def test_materialisations_link_to_their_map_view(local_map):
    query = {"region": [TINY.name], "date": [DATE]}
    assert LINKS["imagery_tiles"] == f"{local_map.url}/map?region={TINY.name}&date={DATE}"
    for asset in ("predictions", "region_report"):
        parts = urlsplit(LINKS[asset])
        assert f"{parts.scheme}://{parts.netloc}" == local_map.url and parts.path == "/map"
        assert parse_qs(parts.query) == {**query, "model": [MODEL], "version": [local_map.version]}
    # The link opens on the map server, and its view is the predictions' model version.
    view = requests.get(f"{local_map.url}/api/view?{urlsplit(LINKS['predictions']).query}", timeout=30)
    assert view.status_code == 200 and view.json()["predictions"]["model"]["version"] == local_map.version
    page = requests.get(LINKS["predictions"], timeout=30)
    assert page.status_code == 200 and "<html" in page.text


def test_cli_prints_the_same_link(local_map):
    printed = _cli(
        local_map.store,
        TINY.name,
        DATE,
        "--model",
        MODEL,
        "--version",
        local_map.version,
        GEO_ASSETS_MAP_URL=local_map.url,
    )
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout.strip() == LINKS["predictions"]
    default = _cli(local_map.store, TINY.name, DATE, GEO_ASSETS_MAP_URL="")  # unset: where `make dev` serves it
    assert default.stdout.strip() == f"{DEFAULT_MAP_URL}/map?region={TINY.name}&date={DATE}", default.stderr
    imagery_only = _cli(local_map.store, TINY.name, DATE, GEO_ASSETS_MAP_URL="https://maps.example.org/geo/")
    assert imagery_only.stdout.strip() == f"https://maps.example.org/geo/map?region={TINY.name}&date={DATE}"


def test_cli_refuses_a_link_to_nothing(local_map):
    for args, named in (
        ((TINY.name, "2031-01-01"), "no imagery_tiles"),
        (("nowhere", DATE), "nowhere"),
        ((TINY.name, DATE, "--model", MODEL, "--version", "0000deadbeef"), "0000deadbeef"),
        ((TINY.name, DATE, "--model", MODEL), "no registered evaluation set"),
    ):  # no serving version
        result = _cli(local_map.store, *args)
        assert result.returncode == 2 and named in result.stderr and "Traceback" not in result.stderr, (
            args,
            result.stderr,
        )
    bad_base = _cli(local_map.store, TINY.name, DATE, GEO_ASSETS_MAP_URL="ftp://x")
    assert bad_base.returncode == 2 and "GEO_ASSETS_MAP_URL" in bad_base.stderr
