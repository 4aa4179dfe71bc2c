"""Imagery from an arrived scene: the STAC items, and their COGs, that landed in a partition's folder
of the storage (see `arrivals`), planned and read exactly like a STAC source's search result, but
through the storage's own connection.

    scene = arrived_scene(store, "incoming/my-farm/2024-06-01", region, bands=["red", "nir"])
    window = scene.read(tile.bounds, ["red", "nir"])

Every `.json` object under the folder must be a STAC item of one collection the STAC sources know
(Sentinel-2 L2A as Earth Search or Planetary Computer name its assets, Landsat C2 L2): the items'
assets say which, so the same harmonisation (Sentinel-2's +1000 offset, Landsat's scale), cloud
masks and mosaic rules apply. Asset hrefs are relative to their item (`./B04.tif`) or absolute URIs
inside the storage root; COGs elsewhere are refused, since they would need another connection.
"""

from __future__ import annotations

import json
import posixpath
from dataclasses import dataclass, replace

from rasterio.warp import transform_geom
from shapely.geometry import shape

from geo_assets.geo import stac
from geo_assets.geo.grid import Bounds
from geo_assets.geo.messages import shown
from geo_assets.geo.regions import Region
from geo_assets.geo.sources import DEFAULT_BANDS, SourceSpec, StacScene, StacSource, Window, check_bands
from geo_assets.geo.stac import ImagerySettings, NoItemsError
from geo_assets.geo.store import PAGE, S3Store, Store, validate_key

MAX_ITEMS = 100  # items in one partition's folder: a mosaic of a few scenes, not a catalogue
_MAX_PAGES = 10  # listing pages of one folder (items and their COGs)


@dataclass(frozen=True)
class ArrivedScene:
    """A StacScene planned from arrived items, read inside the store's GDAL environment. Picklable."""

    scene: StacScene
    store: Store
    folder: str
    items: tuple[tuple[str, str], ...]  # (key, version) of each item read
    # (key, version) of each COG read that lies in the folder: an item rewritten with the same bytes
    # within one second keeps its S3 version (ETag and LastModified), its new COGs do not.
    assets: tuple[tuple[str, str], ...] = ()

    @property
    def spec(self) -> SourceSpec:
        return self.scene.spec

    @property
    def crs(self) -> str:
        return self.scene.crs

    def read(self, bounds: Bounds, bands: list[str]) -> Window:
        with self.store.env():
            return self.scene.read(bounds, bands)

    def describe(self) -> dict:
        # The versions make a rewritten item another scene, hence another output path.
        return {
            **self.scene.describe(),
            "arrivals": {
                "folder": self.folder,
                "items": [list(i) for i in self.items],
                "assets": [list(a) for a in self.assets],
            },
        }


def store_settings(store: Store) -> ImagerySettings:
    """Reader settings that address the store's own bucket (the STAC reader enters them inside the
    store's environment, so its S3 session must be the store's)."""
    if isinstance(store, S3Store):
        return ImagerySettings(
            s3_endpoint=store.endpoint_url,
            s3_region=store.region,
            s3_no_sign=store.anonymous,
            s3_access_key=store.access_key_id,
            s3_secret_key=store.secret_access_key,
        )
    return ImagerySettings()


def _listing(store: Store, folder: str) -> list:
    objects, after = [], ""
    for _ in range(_MAX_PAGES):
        page, more = store.scan(folder, after, PAGE)
        objects += page
        if not more:
            return objects
        after = page[-1].key
    raise ValueError(f"{store.uri(folder)}/ holds more than {_MAX_PAGES * PAGE} objects: not one partition's scene")


def _item(store: Store, key: str) -> dict:
    try:
        item = json.loads(store.read_bytes(key))
    except ValueError:
        raise ValueError(f"arrived item {store.uri(key)} is not JSON") from None
    if not isinstance(item, dict) or item.get("type") != "Feature" or not isinstance(item.get("assets"), dict):
        raise ValueError(f"arrived item {store.uri(key)} is not a STAC item (a Feature with assets)")
    return item


def _collection(store: Store, key: str, item: dict, source: str | None, bands: list[str]) -> stac.Collection:
    """The collection whose id and asset names the item carries (Earth Search and Planetary Computer
    share the Sentinel-2 id but not asset names)."""
    candidates = [c for c in stac.COLLECTIONS.values() if source in (None, c.source)]
    for c in candidates:
        if item.get("collection") == c.collection and {c.mask, *(c.assets[b] for b in bands if b in c.assets)} <= set(
            item["assets"]
        ):
            return c
    known = ", ".join(
        f"{c.source} ({c.collection}: {c.mask}, {', '.join(c.assets[b] for b in bands if b in c.assets)})"
        for c in candidates
    )
    raise ValueError(
        f"arrived item {store.uri(key)} (collection {item.get('collection')!r}, assets {', '.join(sorted(item['assets']))}) "
        f"matches no collection{f' of source {source!r}' if source else ''} with bands {', '.join(bands)}; known: {known}"
    )


def _asset_key(store: Store, item_key: str, href: str) -> str:
    """The storage key of an asset: relative to its item, or an absolute URI inside the store."""
    root = store.root.rstrip("/") + "/"
    if href.startswith(root):
        key = href[len(root) :]
    elif "://" not in href and not href.startswith("/"):
        key = posixpath.normpath(posixpath.join(posixpath.dirname(item_key), href))
    else:
        key = None
    try:
        return validate_key(key)  # type: ignore[arg-type]  # None raises TypeError: refused below
    except (ValueError, TypeError):
        raise ValueError(
            f"arrived item {store.uri(item_key)}: asset href {shown(href)} lies outside the storage root {store.root}; "
            "an arrived scene carries its COGs in the storage (hrefs relative to the item)"
        ) from None


def arrived_scene(
    store: Store,
    folder: str,
    region: Region,
    *,
    source: str | None = None,
    bands: list[str] | None = None,
    max_cloud: float = 100.0,
) -> ArrivedScene:
    """Plan the scene of the items under `folder` (a storage key) for `region`; `source` (optional)
    must match the items' collection."""
    folder = validate_key(folder.strip("/"))
    if source is not None and source not in {c.source for c in stac.COLLECTIONS.values()}:
        raise ValueError(
            f"arrived scenes are STAC items: source must be one of {', '.join(sorted(stac.COLLECTIONS))}, "
            f"or unset (taken from the items), not {source!r}"
        )
    bands = list(bands or DEFAULT_BANDS)
    objects = _listing(store, folder)
    listed = [o for o in objects if o.key.endswith(".json")]
    if not listed:
        raise NoItemsError(f"no STAC items (.json objects) under {store.uri(folder)}/")
    if len(listed) > MAX_ITEMS:
        raise ValueError(f"{store.uri(folder)}/ holds {len(listed)} items; at most {MAX_ITEMS} make one scene")
    items: list[dict] = []
    collection: stac.Collection | None = None
    read: set[str] = set()
    for o in listed:
        item = _item(store, o.key)
        c = _collection(store, o.key, item, source, bands)
        if collection is not None and c != collection:
            raise ValueError(
                f"items under {store.uri(folder)}/ mix collections: {collection.source} and {c.source} ({o.key})"
            )
        collection = c
        used = {c.mask, *(c.assets[b] for b in bands if b in c.assets)}
        keys = {k: _asset_key(store, o.key, a["href"]) for k, a in item["assets"].items() if k in used}
        assets = {
            k: {**{f: v for f, v in a.items() if f != "alternate"}, "href": store.path(keys[k])}
            for k, a in item["assets"].items()
            if k in used
        }
        items.append({**item, "assets": {**item["assets"], **assets}})
        read.update(keys.values())
    assert collection is not None  # set by the first of the listed items (at least one)
    # The STAC source's own spec: one grid rule, the collection's lattice origin included (Landsat C2
    # pixel corners lie on 15 + 30k m; a (0, 0) grid would warp every pixel by half of one).
    spec = StacSource(collection).spec(region)
    bands = check_bands(spec, bands)
    kept = [
        i
        for i in items
        if max_cloud >= 100
        or (i["properties"].get("eo:cloud_cover") is not None and i["properties"]["eo:cloud_cover"] <= max_cloud)
    ]
    if not kept:
        raise NoItemsError(
            f"none of the {len(items)} item(s) under {store.uri(folder)}/ has eo:cloud_cover <= {max_cloud:g}"
        )
    # Hrefs are storage paths now, read with the storage's credentials: never signed as Planetary Computer's are.
    collection = replace(collection, signed=False)
    planned = stac.plan_items(collection, kept, bands, region.crs, remote=False)
    minx, miny, maxx, maxy = region.bbox
    if not any(
        p.bounds[0] < maxx and minx < p.bounds[2] and p.bounds[1] < maxy and miny < p.bounds[3] for p in planned
    ):
        raise NoItemsError(
            f"the item(s) under {store.uri(folder)}/ do not cover region {region.name!r} ({region.crs} {region.bbox})"
        )
    scene = StacScene(replace(spec, bands=tuple(bands)), region.crs, collection, tuple(planned), store_settings(store))
    return ArrivedScene(
        scene,
        store,
        folder,
        tuple((o.key, o.version) for o in listed),
        tuple((o.key, o.version) for o in objects if o.key in read),
    )


def region_from_item(store: Store, name: str, key: str) -> Region:
    """A region named `name` whose footprint is the arrived item's, in the item's own projected CRS
    (`proj:code` or `proj:epsg`): `proj:bbox`, else the bounds of its geometry; its source the item's
    collection. Region() checks the name, the box and that the CRS is projected."""
    item = _item(store, key)
    crs = stac.declared_crs(item.get("properties", {}))
    if crs is None:
        raise ValueError(
            f"arrived item {store.uri(key)} declares no CRS (proj:code or proj:epsg): no footprint to register"
        )
    source = next(
        (
            c.source
            for c in stac.COLLECTIONS.values()
            if item.get("collection") == c.collection and c.mask in item["assets"]
        ),
        None,
    )
    if source is None:
        raise ValueError(
            f"arrived item {store.uri(key)}: collection {item.get('collection')!r} is not one the STAC sources know"
        )
    bbox = item["properties"].get("proj:bbox")
    if not (isinstance(bbox, list) and len(bbox) == 4):
        if not isinstance(item.get("geometry"), dict):
            raise ValueError(f"arrived item {store.uri(key)} has no geometry: no footprint to register")
        bbox = shape(transform_geom("EPSG:4326", crs, item["geometry"])).bounds
    minx, miny, maxx, maxy = (round(float(v), 3) for v in bbox)
    return Region(name, (minx, miny, maxx, maxy), crs, source)
