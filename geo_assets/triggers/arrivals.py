"""scene_arrivals: when a scene lands in the storage, run imagery_tiles for its region and date.

Each tick goes on with the watch of `geo_assets.geo.arrivals` (bounded listings; the cursor, kept
in the instance, says where each pass stands) and turns the new item versions into one run request
per partition, whose config points imagery_tiles at the partition's folder (`arrivals`), so the
run reads the scene that arrived. The run key is a digest of the versions it was asked for: each
version runs once (on a local root, where a folder's change offers its versions again, a partition
whose offered versions its recent runs were all asked for gets no run), and if the daemon stops
part-way, Dagster resumes the tick with the requests and cursor it stored before launching. The runs carry `dagster/partition`, so the instance's run
queue holds a scene that arrives while its partition runs until that run has ended.

Arrivals for a region not in the catalogue wait in the cursor (at most PENDING_MAX) and run once
`geo-assets region add` has added it; with `register_regions` on, the sensor adds it itself
from the first item's footprint, through the same validation. Keys that fit no partition folder,
and dates outside the partitions, are skipped with a line in the tick's log.

Off by default: start it in the UI (Automation, scene_arrivals) or with
`dagster sensor start scene_arrivals -w workspace.yaml`.
"""

import json
import time
from collections import defaultdict

import dagster as dg

from geo_assets.assets.common import digest
from geo_assets.geo.arrivals import Arrival, WatchState
from geo_assets.geo.arrived_scenes import region_from_item
from geo_assets.geo.messages import shown
from geo_assets.geo.regions import add_region, load_catalogue
from geo_assets.geo.store import LocalStore
from geo_assets.partitions import REGIONS, dates_partitions, region_date_key
from geo_assets.settings import by_name
from resources.arrivals import ArrivalsResource, since_timestamp
from resources.storage import StorageResource

INTERVAL = by_name("GEO_ASSETS_ARRIVALS_INTERVAL")
PENDING_MAX = 200  # arrivals held for regions not yet in the catalogue
LOG_KEYS = 20  # unrecognised keys named in a tick's log; the rest are counted
ASKED_RUNS = 50  # a partition's runs whose versions a local root's repeated offer is checked against
MAX_ASKED = 5000  # runs read per tick for that check, whatever the partitions
ARRIVALS_TAG = "geo-assets/arrivals"  # on a run: the item versions it was asked for
UNFINISHED_FOR_GOOD = (dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED, dg.DagsterRunStatus.CANCELING)


def interval_seconds() -> int:
    return INTERVAL.get()


def _register(context, store, arrivals: list[Arrival], enabled: bool, known: set[str]) -> None:
    """Add unknown regions from their first item's footprint (when enabled); report the others."""
    for region in sorted({a.region for a in arrivals} - known):
        waiting = [a for a in arrivals if a.region == region]
        if enabled:
            try:
                added = add_region(store, region_from_item(store, region, waiting[0].key))
            except (ValueError, OSError) as exc:
                context.log.warning(f"region {shown(region)} could not be registered from {waiting[0].key}: {exc}")
            else:
                known.add(region)
                context.log.info(
                    f"registered region {region} ({added.crs} {added.bbox}, source {added.source}) from {waiting[0].key}"
                )
                continue
        context.log.warning(
            f"region {shown(region)} is not in the region catalogue: {len(waiting)} arrived item version(s) wait for it. "
            f"Add it with `geo-assets region add {region} --bbox MINX MINY MAXX MAXY --crs EPSG:XXXX`"
            + (
                ""
                if enabled
                else ", or let this sensor add regions from their items' footprints (GEO_ASSETS_ARRIVALS_REGISTER_REGIONS=true)"
            )
        )


def _asked_before(instance: dg.DagsterInstance, partitions: list[str]) -> dict[str, set[str]]:
    """{partition key: item versions} that this sensor's last ASKED_RUNS runs of each partition were asked
    for: one query for all (MAX_ASKED runs at most), then one per partition that a busier one crowded out
    of it. On a local root a version is offered again when a file of its folder is removed or chmod-ed
    (geo/arrivals.py): such an offer asks for nothing new, and a run of what is left would mosaic fewer
    scenes. A failed or canceled run does not count: removing the item that failed it runs the partition
    again. A run still queued or running counts."""
    statuses = [s for s in dg.DagsterRunStatus if s not in UNFINISHED_FOR_GOOD]

    def runs(keys: list[str], limit: int) -> list[dg.DagsterRun]:
        tags = {"dagster/sensor_name": scene_arrivals.name, "dagster/partition": keys}  # Dagster's tags
        return list(instance.get_runs(filters=dg.RunsFilter(tags=tags, statuses=statuses), limit=limit))

    limit = min(ASKED_RUNS * len(partitions), MAX_ASKED)
    found = runs(partitions, limit)
    per: dict[str, list[dg.DagsterRun]] = {}
    for run in found:
        per.setdefault(run.tags["dagster/partition"], []).append(run)
    if len(found) == limit:  # the newest runs of some partitions may have filled the limit
        for key in partitions:
            if len(per.get(key, [])) < ASKED_RUNS:
                per[key] = runs([key], ASKED_RUNS)
    return {
        key: {ref for run in got[:ASKED_RUNS] for ref in run.tags.get(ARRIVALS_TAG, "").split()}
        for key, got in per.items()
    }


@dg.sensor(
    job_name="imagery_job",
    minimum_interval_seconds=interval_seconds(),
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="Runs imagery_tiles for each region and date whose scene (STAC items and COGs) landed in the storage.",
)
def scene_arrivals(
    context: dg.SensorEvaluationContext, storage: StorageResource, arrivals: ArrivalsResource
) -> dg.SensorResult:
    store, watcher, now = storage.store(), arrivals.watcher(), time.time()
    cursor = json.loads(context.cursor) if context.cursor else {}
    if "watch" in cursor:
        state = WatchState.from_json(cursor["watch"])
    else:
        since = since_timestamp(arrivals.since) if arrivals.since else now
        state = WatchState.start(since, watcher.layout.template, watcher.lookback_days)
    tick = watcher.tick(store, state, now)
    for key, why in tick.unrecognised[:LOG_KEYS]:
        context.log.warning(f"skipped {key}: {why}")
    if len(tick.unrecognised) > LOG_KEYS:
        context.log.warning(f"skipped {len(tick.unrecognised) - LOG_KEYS} more unrecognised keys")

    first, last = dates_partitions.get_first_partition_key(), dates_partitions.get_last_partition_key()
    assert first is not None and last is not None  # a daily definition from a start date has both
    candidates = []
    for a in [Arrival(**p) for p in cursor.get("pending", [])] + tick.arrivals:
        if first <= a.date <= last:
            candidates.append(a)
        else:
            context.log.warning(f"skipped {a.key}: {a.date} is not an acquisition date partition ({first} to {last})")
    known = set(load_catalogue(store).names())
    _register(context, store, candidates, arrivals.register_regions, known)
    ready: defaultdict[tuple[str, str], list[Arrival]] = defaultdict(list)
    held: list[Arrival] = []
    for a in candidates:
        (ready[(a.region, a.date)] if a.region in known else held).append(a)
    if len(held) > PENDING_MAX:
        dropped, held = held[:-PENDING_MAX], held[-PENDING_MAX:]
        context.log.warning(
            f"dropped {len(dropped)} waiting arrival(s), oldest first (e.g. {dropped[0].key}): more than {PENDING_MAX} "
            "wait for unknown regions; rewrite them once their regions are added"
        )

    requests, again = [], 0
    keys = {partition: str(region_date_key(*partition)) for partition in ready}
    asked = _asked_before(context.instance, sorted(keys.values())) if isinstance(store, LocalStore) and ready else {}
    for (region, date), group in sorted(ready.items()):
        refs = sorted(a.ref for a in group)
        if set(refs) <= asked.get(keys[(region, date)], set()):
            again += len(refs)  # a folder's ctime moved (a file removed, a chmod): nothing new to run
            continue
        requests.append(
            dg.RunRequest(
                run_key=f"arrivals:{date}|{region}:{digest(refs)}",
                partition_key=region_date_key(region, date),
                run_config={"ops": {"imagery_tiles": {"config": {"arrivals": watcher.layout.folder(region, date)}}}},
                tags={ARRIVALS_TAG: " ".join(refs)},
            )
        )
    new_regions = sorted({r for r, _ in ready if not context.instance.has_dynamic_partition(REGIONS, r)})
    context.log.info(
        f"listed {tick.listed} keys in {tick.requests} requests: {len(tick.arrivals) - again} new item version(s)"
        + (f" and {again} asked for before (their folder changed)" if again else "")
        + f", {len(requests)} partition(s) to run, {len(held)} waiting; recent-dates pass "
        f"{'done' if tick.hot_done else 'goes on at ' + repr(state.hot.after)}, sweep at {state.sweep.after or 'the start'!r}"
    )
    return dg.SensorResult(
        run_requests=requests,
        cursor=json.dumps({"watch": state.to_json(), "pending": [a.to_json() for a in held]}),
        dynamic_partitions_requests=[dg.AddDynamicPartitionsRequest(REGIONS, new_regions)] if new_regions else None,
    )
