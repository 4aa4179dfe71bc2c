"""Schedules. Every one is off until a team turns it on (UI: Automation; or
`dagster schedule start` / `dagster sensor start`), since most runs here are chosen by hand.

- `monthly_predictions`: on the 1st of each month at 06:00 UTC, imagery, predictions and a report of
  that day's partition for each region named in GEO_ASSETS_SCHEDULED_REGIONS, predicted by the serving
  version of landcover-unet. Each region is checked as `geo-assets launch` checks it; a region that
  cannot succeed (unknown, a sample scene of another date, no serving model) is skipped with a log line.

The declarative automation of predictions is in `automation.py`.
"""

import datetime

import dagster as dg

from geo_assets.cli.launches import ASSETS, plan
from geo_assets.limits import max_backfill_partitions
from geo_assets.settings import by_name
from geo_assets.triggers.automation import TRIGGER_TAG
from resources.gate import ModelGate
from resources.storage import StorageResource

REGIONS = by_name("GEO_ASSETS_SCHEDULED_REGIONS")
REGIONS_ENV = REGIONS.name


def scheduled_regions() -> list[str]:
    names = REGIONS.get()
    if len(names) > max_backfill_partitions():
        raise ValueError(
            f"{REGIONS_ENV} names {len(names)} regions; at most {max_backfill_partitions()} (GEO_ASSETS_MAX_BACKFILL_PARTITIONS)"
        )
    return list(dict.fromkeys(names))


@dg.schedule(
    cron_schedule="0 6 1 * *",
    execution_timezone="UTC",
    target=dg.AssetSelection.assets(*ASSETS),
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Imagery, predictions and a report for each region of GEO_ASSETS_SCHEDULED_REGIONS on the 1st of the month.",
)
def monthly_predictions(
    context: dg.ScheduleEvaluationContext, storage: StorageResource, gate: dg.ResourceParam[ModelGate]
):
    regions = scheduled_regions()
    if not regions:
        return dg.SkipReason(f"no region is scheduled: set {REGIONS_ENV}=region-a,region-b")
    date = context.scheduled_execution_time.astimezone(datetime.UTC).date().isoformat()
    # The UI previews future ticks by evaluating them now; their date is not a partition yet, so a preview
    # checks everything else and requests nothing.
    preview = date > datetime.datetime.now(datetime.UTC).date().isoformat()
    store, requests, refused = storage.store(), [], []
    for region in regions:
        try:
            request = plan(store, region, [date], min_miou=gate.min_miou, in_partitions=not preview)
        except (ValueError, LookupError) as exc:
            context.log.warning(f"{region} {date} skipped: {exc}")
            refused.append(region)
            continue
        key = request.partitions[0]
        requests.append(
            dg.RunRequest(
                run_key=key,
                partition_key=key,
                run_config=request.run_config,
                tags={**request.tags, TRIGGER_TAG: "monthly_predictions"},
            )
        )
    if preview:
        return dg.SkipReason(
            f"preview of the tick of {date}: it will request {', '.join(r.partition_key or '' for r in requests) or 'nothing'}"
            + (f"; refused now: {', '.join(refused)}" if refused else "")
            + " (nothing is requested before that day)"
        )
    if not requests:
        return dg.SkipReason(
            f"every scheduled region was refused for {date}: {', '.join(refused)} (see the tick's log)"
        )
    return requests


SCHEDULES = [monthly_predictions]
