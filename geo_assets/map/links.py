"""Links to the map view of a region x date (x model version): what assets put in their metadata and
`geo-assets map` prints. The map server's public address is a deployment setting."""

from __future__ import annotations

from urllib.parse import urlencode

from geo_assets.settings import by_name

MAP_URL_ENV = "GEO_ASSETS_MAP_URL"
DEFAULT_PORT = 3100  # `make dev` serves the map here, beside the Dagster UI on 3000
DEFAULT_MAP_URL = f"http://127.0.0.1:{DEFAULT_PORT}"


def map_base_url() -> str:
    base = by_name(MAP_URL_ENV).raw() or DEFAULT_MAP_URL  # declared in geo_assets/settings.py
    if not base.startswith(("http://", "https://")):
        raise ValueError(f"{MAP_URL_ENV}={base!r}: expected the map server's address, http(s)://host[:port][/path]")
    return base.rstrip("/")


def map_url(
    region: str, date: str, model: str | None = None, version: str | None = None, base: str | None = None
) -> str:
    """The map page of one acquisition, with one model version's predictions where given."""
    query = {
        "region": region,
        "date": date,
        **({"model": model} if model else {}),
        **({"version": version} if version else {}),
    }
    return f"{base or map_base_url()}/map?{urlencode(query)}"
