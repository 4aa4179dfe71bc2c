"""The map service of deploy/compose/, checked offline: the code location's image, the host network,
127.0.0.1 only, the store's settings and nothing more (no database password, no engine socket), and
links that point at it."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "deploy/compose/docker-compose.yml").read_text())
INSTANCE = yaml.safe_load((ROOT / "deploy/compose/dagster.yaml").read_text())


def test_map_service_reads_the_store_and_nothing_else():
    service = COMPOSE["services"]["map"]
    assert service["image"] == COMPOSE["services"]["code-server"]["image"] and service["network_mode"] == "host"
    assert "geo-assets map-server --host 127.0.0.1 " in service["command"][-1]
    assert not any(k.startswith("DAGSTER_PG") for k in service["environment"])
    assert "volumes" not in service and "group_add" not in service  # no instance, no engine socket
    assert service["environment"]["GEO_ASSETS_STORAGE_ROOT"] == COMPOSE["x-environment"]["GEO_ASSETS_STORAGE_ROOT"]


def test_links_in_every_run_point_at_the_map():
    assert COMPOSE["x-environment"]["GEO_ASSETS_MAP_URL"] == "${GEO_ASSETS_MAP_URL:-http://127.0.0.1:3100}"
    assert "GEO_ASSETS_MAP_URL" in INSTANCE["run_launcher"]["config"]["env_vars"]  # runs write the links


def test_the_wheel_carries_the_map_page(wheel):
    """The page's own files, from a clean checkout; Leaflet is not in git (fetched by `make map-page`),
    and package-data takes it in wherever it was fetched before the build."""
    import zipfile

    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"geo_assets/map/page/index.html", "geo_assets/map/page/map.js", "geo_assets/map/page/map.css"} <= names
    text = (ROOT / "pyproject.toml").read_text()
    assert '"map/page/leaflet/*", "map/page/leaflet/images/*"' in text
