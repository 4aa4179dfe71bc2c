"""Partitions: regions x acquisition dates for imagery and its products, model names for models."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import dagster as dg

from geo_assets.geo.messages import shown
from geo_assets.geo.regions import validate_date, validate_region_name

T = TypeVar("T")

REGIONS = "regions"
MODELS = "models"

regions_partitions = dg.DynamicPartitionsDefinition(name=REGIONS)
models_partitions = dg.DynamicPartitionsDefinition(name=MODELS)
# Daily from Sentinel-2A's launch; end_offset=1 so today's acquisitions are already addressable.
dates_partitions = dg.DailyPartitionsDefinition(start_date="2015-06-23", end_offset=1)
region_date_partitions = dg.MultiPartitionsDefinition({"region": regions_partitions, "date": dates_partitions})


def region_date_key(region: str, date: str) -> dg.MultiPartitionKey:
    return dg.MultiPartitionKey({"region": validate_region_name(region), "date": validate_date(date)})


# Dagster's run tags naming a run's partition, or the ends of its range (a backfill's single run).
PARTITION_TAGS = ("dagster/partition", "dagster/asset_partition_range_start", "dagster/asset_partition_range_end")


def _check_tags(context: dg.AssetExecutionContext, validate: Callable[[str], object]) -> None:
    """The run's own partition tags through `validate`, before Dagster looks its keys up: any key can be
    launched over GraphQL, and Dagster's lookup of one that is no partition fails with the whole key (10 KB,
    control characters and all) inside an internal error; ours names it and says what a key may be."""
    for tag in PARTITION_TAGS:
        if tag in context.run.tags:
            validate(context.run.tags[tag])


def partition_keys(context: dg.AssetExecutionContext, validate: Callable[[str], object]) -> list[str]:
    """The run's partition keys, its tags validated first (`_check_tags`)."""
    _check_tags(context, validate)
    return [str(k) for k in context.partition_keys]


def partition_key(context: dg.AssetExecutionContext, validate: Callable[[str], T]) -> T:
    """The run's one partition key through `validate`, its tags validated first (`_check_tags`)."""
    _check_tags(context, validate)
    return validate(context.partition_key)


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
        raise ValueError(f"expected a region|date partition key, got {shown(key)}")
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
            f"invalid model name {shown(name)}: use lowercase letters, digits and hyphens (not at either end), "
            "at most 63 characters"
        ) from None
