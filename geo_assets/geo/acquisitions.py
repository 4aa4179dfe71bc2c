"""An acquisition's stored variants: one region and date cut with other bands, tile sizes or sources.

Each variant has its own manifest, `manifests/imagery_tiles/region=R/date=D/<variant>.json`, so cutting
one never replaces another; readers choose the variant they need. Manifests of the earlier layout (one
per acquisition, `.../date=D.json`) are still read: they name their source, bands and tile size.
"""

from __future__ import annotations

from collections.abc import Mapping

from geo_assets.geo.manifests import ImageryManifest
from geo_assets.geo.store import ObjectNotFoundError, Store, validate_key

DEFAULT_TILE_SIZE = 256  # ImageryConfig's default: preferred where several tile sizes would do


def variant(source: str, tile_size: int, bands: list[str]) -> str:
    """What makes an acquisition's pixels differ, as a path segment: `synthetic-256px-blue-green-red-nir`."""
    return validate_key(f"{source}-{tile_size}px-{'-'.join(bands)}")


def variant_of(manifest: ImageryManifest) -> str:
    return variant(manifest["source"], manifest["tile_size"], manifest["bands"])


def _base(region: str) -> str:
    return f"manifests/imagery_tiles/region={region}"


def imagery_key(region: str, date: str, variant_name: str) -> str:
    return validate_key(f"{_base(region)}/date={date}/{variant_name}.json")


def legacy_imagery_key(region: str, date: str) -> str:
    """The one manifest of an acquisition before variants were kept apart."""
    return validate_key(f"{_base(region)}/date={date}.json")


def imagery_dates(store: Store, region: str) -> list[str]:
    """Dates of a region that have imagery of any variant, from the stored manifests."""
    dates = set()
    for key in store.list(_base(region)):
        part = key[len(_base(region)) + 1 :].split("/", 1)[0]  # date=D or date=D.json
        dates.add(part.removeprefix("date=").removesuffix(".json"))
    return sorted(dates)


def imagery_variants(store: Store, region: str, date: str) -> dict[str, ImageryManifest]:
    """Manifest key -> manifest of every stored variant of the acquisition; a legacy manifest only
    where no manifest of the current layout holds its variant."""
    folder = f"{_base(region)}/date={date}/"
    found = {
        k: store.read_json(k) for k in store.list(folder.rstrip("/")) if k.startswith(folder) and k.endswith(".json")
    }
    legacy = legacy_imagery_key(region, date)
    try:
        old = store.read_json(legacy)
    except ObjectNotFoundError:
        return found
    if variant_of(old) not in {variant_of(m) for m in found.values()}:
        found[legacy] = old
    return found


def describe(manifests: Mapping[str, ImageryManifest]) -> str:
    return (
        "; ".join(f"{m['source']} {m['tile_size']} px [{', '.join(m['bands'])}]" for m in manifests.values()) or "none"
    )


def pick_imagery(
    store: Store,
    region: str,
    date: str,
    *,
    bands: list[str] | None = None,
    tile_size: int | None = None,
    source: str | None = None,
    prefer_source: str | None = None,
    widest: bool = False,
) -> tuple[str, ImageryManifest]:
    """(manifest key, manifest) of the variant that holds `bands` (all of them, in any order), of this
    tile size and source where given. Of several: the fewest extra bands (`widest`: the most bands),
    then `prefer_source`, then the default tile size; a tie that remains is refused, naming the variants."""
    stored = imagery_variants(store, region, date)
    if not stored:
        raise FileNotFoundError(
            f"no imagery_tiles for region {region!r} on {date}: materialise imagery_tiles[{date}|{region}] first"
        )
    fits = {
        k: m
        for k, m in stored.items()
        if (bands is None or set(bands) <= set(m["bands"]))
        and (tile_size is None or m["tile_size"] == tile_size)
        and (source is None or m["source"] == source)
    }
    if not fits:
        wanted = ", ".join(
            filter(
                None,
                [
                    f"bands {', '.join(bands)}" if bands else None,
                    f"tile size {tile_size} px" if tile_size else None,
                    f"source {source}" if source else None,
                ],
            )
        )
        raise FileNotFoundError(
            f"no imagery_tiles of region {region!r} on {date} with {wanted}; stored variants: {describe(stored)}. "
            f"Materialise imagery_tiles[{date}|{region}] with that config first"
        )

    def rank(item):
        m = item[1]
        extra = len(m["bands"]) - len(bands or [])
        return (-extra if widest else extra, m["source"] != prefer_source, m["tile_size"] != DEFAULT_TILE_SIZE)

    ranked = sorted(fits.items(), key=rank)
    best = [item for item in ranked if rank(item) == rank(ranked[0])]
    if len(best) > 1:
        raise ValueError(
            f"imagery_tiles of region {region!r} on {date} has {len(best)} variants that fit equally "
            f"({describe(dict(best))}): choose one with the tile_size or source config"
        )
    return best[0]
