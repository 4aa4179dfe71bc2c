"""Small helpers shared by the asset modules: catalogue, manifests of other partitions, run tags."""


import hashlib
import json

import dagster as dg

from geo_assets.geo.regions import RegionCatalogue, load_catalogue
from geo_assets.geo.store import ObjectNotFoundError, Store
from resources.storage import dims_path, manifest_key

TAG_PREFIX = "geo-assets/"


def catalogue(store: Store) -> RegionCatalogue:
    return load_catalogue(store)


def tag_run(context: dg.AssetExecutionContext, **tags: object) -> None:
    """Record what this run worked on (region, source, model, version) as run tags, for the UI's filters."""
    context.instance.add_run_tags(context.run.run_id, {TAG_PREFIX + k.replace("_", "-"): str(v) for k, v in tags.items()})


def imagery_manifest(store: Store, region: str, date: str) -> dict:
    key = manifest_key("imagery_tiles", dims_path({"region": region, "date": date}))
    try:
        return store.read_json(key)
    except ObjectNotFoundError:
        raise FileNotFoundError(f"no imagery_tiles for region {region!r} on {date}: materialise imagery_tiles[{date}|{region}] first") from None


def imagery_dates(store: Store, region: str) -> list[str]:
    """Dates of a region that have imagery, from the stored manifests."""
    prefix = f"manifests/imagery_tiles/region={region}"
    return sorted(k.rsplit("date=", 1)[1].removesuffix(".json") for k in store.list(prefix))


def labels_manifest(store: Store, region: str) -> dict:
    key = manifest_key("labels", region)
    try:
        return store.read_json(key)
    except ObjectNotFoundError:
        raise FileNotFoundError(f"no labels for region {region!r}: materialise labels[{region}] first") from None


def digest(value: object) -> str:
    """A short content hash of a JSON-able value: the data version of a manifest."""
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:16]


def output(manifest: dict, metadata: dict) -> dg.Output:
    return dg.Output(manifest, metadata={**metadata, "manifest_digest": digest(manifest)})
