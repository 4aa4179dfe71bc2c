"""Partitions: regions x acquisition dates for imagery and its products, model names for models."""

from __future__ import annotations

import dagster as dg

from geo_assets.geo.regions import validate_date, validate_region_name

REGIONS = "regions"
MODELS = "models"

regions_partitions = dg.DynamicPartitionsDefinition(name=REGIONS)
models_partitions = dg.DynamicPartitionsDefinition(name=MODELS)
# Daily from Sentinel-2A's launch; end_offset=1 so today's acquisitions are already addressable.
dates_partitions = dg.DailyPartitionsDefinition(start_date="2015-06-23", end_offset=1)
region_date_partitions = dg.MultiPartitionsDefinition({"region": regions_partitions, "date": dates_partitions})


def region_date_key(region: str, date: str) -> dg.MultiPartitionKey:
    return dg.MultiPartitionKey({"region": validate_region_name(region), "date": validate_date(date)})


def region_and_date(context: dg.AssetExecutionContext) -> tuple[str, str]:
    """The validated (region, date) of a run; hostile keys fail here, before any storage is touched."""
    return split_key(context.partition_key)


def check_partition_dates(dates: list[str]) -> None:
    """Each date one of the date partitions: from the first to today (UTC; end_offset=1 makes today's
    partition exist from midnight). Checked at launch and again in each step, whatever launched it."""
    first, last = dates_partitions.get_first_partition_key(), dates_partitions.get_last_partition_key()
    assert first is not None and last is not None  # a daily definition from a start date has both
    outside = [d for d in dates if not first <= d <= last]
    if outside:
        raise ValueError(
            f"date(s) {', '.join(outside[:3])} lie outside the date partitions ({first} to {last}, today in UTC)"
        )


def split_key(key: str) -> tuple[str, str]:
    """The validated (region, date) of a `date|region` partition key, its date within the partitions."""
    if isinstance(key, str) and not isinstance(key, dg.MultiPartitionKey) and key.count("|") == 1:
        key = region_date_partitions.get_partition_key_from_str(key)
    if not isinstance(key, dg.MultiPartitionKey):
        raise ValueError(f"expected a region|date partition key, got {key!r}")
    dims = key.keys_by_dimension
    region, date = validate_region_name(dims["region"]), validate_date(dims["date"])
    check_partition_dates([date])
    return region, date


def validate_model_name(name: str) -> str:
    """Model names are slugs too: they become partition keys and storage paths."""
    try:
        return validate_region_name(name)
    except ValueError:
        raise ValueError(
            f"invalid model name {name!r}: use lowercase letters, digits and hyphens (not at either end), "
            "at most 63 characters"
        ) from None
