"""What a launch asks for, checked before it starts: the partitions, their run config and tags.

`geo-assets launch`, `geo-assets backfill` and the schedules build their requests here, so a partition
that cannot succeed is refused before any run exists: an unknown region, a date outside the partitions,
a sample source asked for a date it has no scene of, a region over the tile limit, a model with no
version, or a model whose bands the source cannot deliver. The same checks run again in the step, so
a launch from the UI fails in its first second instead.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from geo_assets.config import DEFAULT_MODEL, ImageryConfig
from geo_assets.geo.acquisitions import imagery_variants
from geo_assets.geo.regions import check_size, load_catalogue, validate_date
from geo_assets.geo.sources import DEFAULT_BANDS, check_bands, check_dates, get_source
from geo_assets.limits import max_tiles
from geo_assets.ml import registry
from geo_assets.partitions import check_partition_dates, validate_model_name

ASSETS = ("imagery_tiles", "predictions", "region_report")  # the region x date assets, upstream first
TAG = "geo-assets/"


def date_range(start: str, end: str, limit: int) -> list[str]:
    """Every date from `start` to `end`, both included; at most `limit` of them."""
    first, last = (datetime.date.fromisoformat(validate_date(d)) for d in (start, end))
    if last < first:
        raise ValueError(f"--from {start} is after --to {end}")
    count = (last - first).days + 1
    if count > limit:
        raise ValueError(
            f"{start} to {end} is {count:,} dates; a backfill may hold at most {limit:,} partitions "
            "(GEO_ASSETS_MAX_BACKFILL_PARTITIONS): split the range"
        )
    return [(first + datetime.timedelta(days=i)).isoformat() for i in range(count)]


@dataclass(frozen=True)
class Request:
    """Runs to launch: these assets for these `date|region` partitions, with this run config and these tags."""

    assets: tuple[str, ...]
    partitions: tuple[str, ...]
    run_config: dict
    tags: dict[str, str]


def plan(
    store,
    region_name: str,
    dates: list[str],
    *,
    min_miou: float,
    source: str | None = None,
    model: str | None = None,
    version: str | None = None,
    assets: tuple[str, ...] = ASSETS,
    in_partitions: bool = True,
) -> Request:
    """The request for `assets` of region x dates, or a ValueError/LookupError naming why it cannot succeed.
    `in_partitions=False` leaves out the check that the dates are date partitions already (a schedule's
    preview of a future tick, which requests nothing)."""
    unknown = [a for a in assets if a not in ASSETS]
    if unknown or not assets:
        raise ValueError(f"unknown asset(s) {', '.join(unknown) or '(none)'}; accepted: {', '.join(ASSETS)}")
    assets = tuple(a for a in ASSETS if a in assets)  # upstream first
    region = load_catalogue(store).get(region_name)
    dates = [validate_date(d) for d in dates]
    if in_partitions:
        check_partition_dates(dates)
    source = source or region.source
    spec = get_source(source).spec(region)  # an unknown source, or a sample that does not cover the region
    check_dates(source, region, dates)
    check_size(region, spec.grid(region.crs, ImageryConfig().tile_size), max_tiles())

    ops: dict = {}
    tags = {TAG + "region": region.name, TAG + "source": source}
    bands = list(DEFAULT_BANDS)
    if "predictions" in assets or "region_report" in assets:
        model = validate_model_name(DEFAULT_MODEL if model is None else model)
        versions = registry.list_versions(store, model)
        record = registry.resolve_version(store, model, version, min_miou, versions)
        bands = record["bands"]  # the imagery is cut with the bands the model reads
        try:
            check_bands(spec, bands)
        except ValueError:
            raise ValueError(
                f"model {model} version {record['version']} reads bands {', '.join(bands)}; source {source!r} of region "
                f"{region.name!r} has {', '.join(spec.bands)}: choose another model or source"
            ) from None
        tags |= {TAG + "model": model, **({TAG + "model-version": version} if version else {})}
        if "predictions" in assets:
            ops["predictions"] = {"config": {"model": model, **({"version": version} if version else {})}}
        else:  # a report alone reports the model's stored predictions
            ops["region_report"] = {"config": {"model": model, **({"version": version} if version else {})}}
    elif model is not None or version is not None:
        raise ValueError("--model and --version choose what predicts: select predictions or region_report too")
    if "imagery_tiles" in assets:
        check_bands(spec, bands)
        ops["imagery_tiles"] = {"config": {"source": source, "bands": bands}}
    else:  # predictions and reports read the stored imagery of each date, the variant with the model's bands
        missing = [
            d
            for d in dates
            if not any(set(bands) <= set(m["bands"]) for m in imagery_variants(store, region.name, d).values())
        ]
        if missing:
            raise FileNotFoundError(
                f"no imagery_tiles for region {region.name!r} on {', '.join(missing[:3])}"
                f"{f' and {len(missing) - 3} more dates' if len(missing) > 3 else ''}: select imagery_tiles too "
                f"(predictions read a variant holding bands {', '.join(bands)})"
            )
    keys = tuple(f"{d}|{region.name}" for d in dates)
    return Request(assets, keys, {"ops": ops}, tags)
