"""The map server: a read-only FastAPI app over one store.

Built on rio-tiler, not on titiler's endpoint factories: those take the dataset's URL from the
request (`?url=`) and bring dozens of endpoints (expressions, statistics, cut-outs) that a read-only
viewer would then have to audit. Here every route names a region, a date, a model and a version,
which `layers` turns into stored keys; only GET routes exist; every error is a 4xx (or a bare 500)
with one message, never a stack trace.

    GET /map?region=R&date=D[&model=M&version=V]          the map page
    GET /api/view?region=R&date=D[&model=M&version=V][&against_date=D2|&against_version=V2]
    GET /api/tilejson.json?region=R&date=D&layer={true-colour|false-colour|predictions}[&model=M&version=V]
    GET /api/legend                                       classes and colours
    GET /api/class?region=R&date=D&model=M&version=V&lon=X&lat=Y   the class at a place
    GET /tiles/imagery/R/D/{true-colour|false-colour}/z/x/y.png[?variant=...]
    GET /tiles/predictions/R/D/M/V/z/x/y.png
    GET /tiles/difference/R/D/M/V/z/x/y.png?against_date=D2 | against_version=V2
"""

from __future__ import annotations

import logging
import threading
import time
from importlib import resources as package_files
from urllib.parse import urlencode

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from geo_assets.geo.store import ObjectNotFoundError, Store
from geo_assets.map import clients, layers, links, tiles
from geo_assets.map.layers import BadRequest, NotFound
from geo_assets.settings import by_name

log = logging.getLogger("geo_assets.map")
PAGE = package_files.files("geo_assets.map") / "page"
BASEMAP_ENV = "GEO_ASSETS_MAP_BASEMAP_URL"  # an XYZ template under the imagery, e.g. a team's own tile server
RATE_ENV = "GEO_ASSETS_MAP_RATE"  # requests per second one client may make (a burst of twice that); who: clients.py
DEFAULT_RATE = 100
PNG_CACHE = "public, max-age=300"


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


class _Rate:
    """A token bucket per client (clients.py: its user through the sign-in proxy, else its address): a map
    view asks for a few dozen tiles at once, a scraper more."""

    def __init__(self, per_second: float) -> None:
        self.per_second, self.burst = per_second, 2 * per_second
        self.buckets: dict[str, tuple[float, float]] = {}
        self.lock = threading.Lock()

    def allow(self, client: str) -> bool:
        now = time.monotonic()
        with self.lock:
            tokens, then = self.buckets.get(client, (self.burst, now))
            tokens = min(self.burst, tokens + (now - then) * self.per_second)
            if len(self.buckets) > 10_000:  # forget idle clients
                self.buckets.clear()
            self.buckets[client] = (tokens - 1, now) if tokens >= 1 else (tokens, now)
            return tokens >= 1


def _rate() -> float:
    raw = by_name(RATE_ENV).raw() or str(DEFAULT_RATE)  # declared in geo_assets/settings.py
    try:
        rate = float(raw)
    except ValueError:
        rate = -1
    if not 1 <= rate <= 100_000:
        raise ValueError(f"{RATE_ENV}={raw!r}: requests per second per client, a number from 1 to 100000")
    return rate


def _basemap() -> str | None:
    url = by_name(BASEMAP_ENV).get()
    if url and not (url.startswith(("http://", "https://")) and all(p in url for p in ("{z}", "{x}", "{y}"))):
        raise ValueError(f"{BASEMAP_ENV}={url!r}: expected an XYZ template, http(s)://.../{{z}}/{{x}}/{{y}}.png")
    return url


def create_app(store: Store) -> FastAPI:
    rate, basemap, who, public = _Rate(_rate()), _basemap(), clients.from_env(), links.map_base_url()
    app = FastAPI(title="geo-assets map", docs_url=None, redoc_url=None, openapi_url=None)

    @app.middleware("http")
    async def limit(request: Request, call_next):
        # /healthz is not limited: a load balancer's checks share the addresses of the users behind it.
        if request.url.path != "/healthz" and not rate.allow(
            who.key(request.client.host if request.client else None, request.headers)
        ):
            return _error(429, f"too many requests: at most {rate.per_second:g} per second per client ({RATE_ENV})")
        return await call_next(request)

    @app.exception_handler(BadRequest)
    async def bad_request(request, exc):
        return _error(400, str(exc))

    @app.exception_handler(NotFound)
    async def not_found(request, exc):
        return _error(404, str(exc))

    @app.exception_handler(ObjectNotFoundError)
    async def object_gone(request, exc):  # a manifest names an object since deleted
        return _error(404, str(exc))

    @app.exception_handler(RequestValidationError)
    async def invalid(request, exc):
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("query", "path"))
        return _error(400, f"invalid {where or 'request'}: {first.get('msg', 'not accepted')}")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request, exc):
        return _error(exc.status_code, exc.detail if isinstance(exc.detail, str) else "not accepted")

    @app.exception_handler(Exception)
    async def failure(request, exc):  # logged here; the client gets no internals
        log.exception("map request %s failed", request.url.path)
        return _error(500, "the map server failed to answer this request; its log names the cause")

    def png(data: bytes) -> Response:
        return Response(data, media_type="image/png", headers={"Cache-Control": PNG_CACHE})

    @app.get("/healthz")
    def healthz():
        return {"ok": True}

    @app.get("/map")
    def page():
        if not (PAGE / "leaflet" / "leaflet.js").is_file():  # fetched at set-up, with npm (devtools/leaflet.py)
            return _error(
                503,
                "the map page's Leaflet is not installed here: run `make map-page` (needs npm) "
                "where the package is built; the tiles and /api routes work without it",
            )
        return FileResponse(str(PAGE / "index.html"), media_type="text/html")

    @app.get("/api/legend")
    def legend():
        return layers.legend()

    @app.get("/api/view")
    def view(
        region: str,
        date: str,
        model: str | None = None,
        version: str | None = None,
        against_date: str | None = None,
        against_version: str | None = None,
    ):
        found = layers.imagery(store, region, date)
        shape, crs = layers.footprint(store, region)
        composites = [c for c in layers.COMPOSITES if all(b in found.manifest["bands"] for b in layers.COMPOSITES[c])]
        out = {
            "region": region,
            "date": date,
            "crs": crs,
            "footprint": shape,
            "grid": layers.tile_grid(found),
            "zoom": [tiles.MIN_ZOOM, tiles.MAX_ZOOM],
            "basemap": basemap,
            "legend": layers.legend(),
            "imagery": {
                "variant": found.variant,
                "bands": found.manifest["bands"],
                "layers": {
                    c: f"tiles/imagery/{region}/{date}/{c}/{{z}}/{{x}}/{{y}}.png?{urlencode({'variant': found.variant})}"
                    for c in composites
                },
            },
        }
        if (model is None) != (version is None):
            raise BadRequest("name both model and version, or neither")
        if model is not None and version is not None:  # both or neither, checked above
            layers.predictions(store, region, date, model, version)  # 404 now, not per tile
            out["predictions"] = {
                "tiles": f"tiles/predictions/{region}/{date}/{model}/{version}/{{z}}/{{x}}/{{y}}.png",
                "class": f"api/class?{urlencode({'region': region, 'date': date, 'model': model, 'version': version})}",
                "model": layers.model_record(store, model, version),
            }
            if against_date or against_version:
                _against(region, date, model, version, against_date, against_version)
                query = urlencode(
                    {k: v for k, v in (("against_date", against_date), ("against_version", against_version)) if v}
                )
                out["difference"] = {
                    "tiles": f"tiles/difference/{region}/{date}/{model}/{version}/{{z}}/{{x}}/{{y}}.png?{query}",
                    "against_date": against_date or date,
                    "against_version": against_version or version,
                }
        return out

    @app.get("/api/tilejson.json")
    def tilejson(
        region: str, date: str, layer: str = "true-colour", model: str | None = None, version: str | None = None
    ):
        """One layer as TileJSON 3.0, for other map clients (QGIS, MapLibre); its tiles at the map's public
        address (GEO_ASSETS_MAP_URL, where the links point)."""
        described = view(region, date, model, version)
        found = dict(described["imagery"]["layers"])
        if "predictions" in described:
            found["predictions"] = described["predictions"]["tiles"]
        if layer not in found:
            raise BadRequest(
                f"no layer {layer!r} here: one of {', '.join(sorted(found))}"
                + ("" if model else " (predictions: name a model and version)")
            )
        ring = described["footprint"]["coordinates"][0]
        west, east = min(p[0] for p in ring), max(p[0] for p in ring)
        south, north = min(p[1] for p in ring), max(p[1] for p in ring)
        return {
            "tilejson": "3.0.0",
            "name": f"{region} {date} {layer}",
            "scheme": "xyz",
            "tiles": [f"{public}/{found[layer]}"],
            "minzoom": tiles.MIN_ZOOM,
            "maxzoom": tiles.MAX_ZOOM,
            "bounds": [west, south, east, north],
            "center": [(west + east) / 2, (south + north) / 2, 14],
        }

    def _against(region, date, model, version, against_date, against_version) -> dict:
        if not (against_date or against_version):
            raise BadRequest("a difference needs against_date or against_version (or both)")
        return layers.predictions(store, region, against_date or date, model, against_version or version)

    @app.get("/api/class")
    def class_at(
        region: str,
        date: str,
        model: str,
        version: str,
        lon: float = Query(allow_inf_nan=False),
        lat: float = Query(allow_inf_nan=False),
    ):
        return tiles.class_at(store, layers.predictions(store, region, date, model, version), lon, lat)

    @app.get("/tiles/imagery/{region}/{date}/{composite}/{z}/{x}/{y}.png")
    def imagery_tile(region: str, date: str, composite: str, z: int, x: int, y: int, variant: str | None = None):
        tiles.check_tile(z, x, y)
        return png(tiles.imagery_tile(store, layers.imagery(store, region, date, variant), composite, z, x, y))

    @app.get("/tiles/predictions/{region}/{date}/{model}/{version}/{z}/{x}/{y}.png")
    def prediction_tile(region: str, date: str, model: str, version: str, z: int, x: int, y: int):
        tiles.check_tile(z, x, y)
        return png(tiles.class_tile(store, layers.predictions(store, region, date, model, version), z, x, y))

    @app.get("/tiles/difference/{region}/{date}/{model}/{version}/{z}/{x}/{y}.png")
    def difference_tile(
        region: str,
        date: str,
        model: str,
        version: str,
        z: int,
        x: int,
        y: int,
        against_date: str | None = None,
        against_version: str | None = None,
    ):
        tiles.check_tile(z, x, y)
        now = layers.predictions(store, region, date, model, version)
        before = _against(region, date, model, version, against_date, against_version)
        return png(tiles.difference_tile(store, now, before, z, x, y))

    app.mount("/static", StaticFiles(directory=str(PAGE)), name="static")
    return app
