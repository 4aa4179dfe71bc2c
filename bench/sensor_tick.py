"""Benchmark: one scene_arrivals tick with 100 new objects in buckets of 1k, 10k and 100k objects,
beside dagster_aws's `get_objects` on the same bucket.

    .venv/bin/python -m bench.sensor_tick [--sizes 1000 10000 100000] [--repeats 5] [--quick]

A local S3 server (SeaweedFS, signed requests) holds one bucket per size. Each bucket has a history
laid out as deliveries accumulate: 10 regions x 3 items a day under `incoming/{region}/{date}/`,
going back size / 30 days (so recent dates hold the same items in every bucket), then 100
new items (10 regions x 10, today) land after the watch has started.

* tick: the real `scene_arrivals` sensor evaluated from its cursor, default settings (the recent-dates
  pass over each region folder from 8 days back, 0.25 s of sweep over older keys, the catalogue
  read, the run requests);
* get_objects: `dagster_aws.s3.sensor.get_objects(bucket, "incoming/", since_last_modified=...)`,
  the stock helper's recommended use (a last-modified cursor), which lists the whole prefix.

Both must return the same 100 keys. Medians of alternating runs; the target is a tick of at most
1 s whatever the bucket's size. `--quick` uses buckets of 1000 and 2000 objects.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.common import REPO, machine_info, write_section

# What the figures measure (bench.stale): a change to any of these since the recorded commit makes them stale.
MEASURES = [
    "bench/sensor_tick.py",
    "geo_assets/triggers/arrivals.py",
    "geo_assets/geo/arrivals.py",
    "geo_assets/geo/regions.py",
    "geo_assets/geo/store.py",
    "resources/arrivals.py",
    "resources/storage.py",
]

REGIONS = [f"farm-{i:02d}" for i in range(10)]
NEW_PER_REGION = 10
FOOTPRINT = ((399360.0, 5140480.0, 400640.0, 5141760.0), "EPSG:32631")


def history_keys(size: int, today) -> list[str]:
    days = -(-size // (3 * len(REGIONS)))
    keys = [
        f"incoming/{r}/{today - timedelta(days=d)}/hist-{i}.json"
        for d in range(1, days + 1)
        for r in REGIONS
        for i in range(3)
    ]
    return keys[:size]


def fill(client, bucket: str, keys: list[str], threads: int = 32) -> None:
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda k: client.put_object(Bucket=bucket, Key=k, Body=b"{}"), keys))


def prepare(client, s3, bucket: str, size: int, today):
    """The bucket's history, the sensor's cursor from a first tick, then the new items."""
    import dagster as dg

    from geo_assets.geo.regions import Region, add_region
    from geo_assets.geo.store import make_store
    from geo_assets.triggers.arrivals import scene_arrivals
    from resources.arrivals import ArrivalsResource
    from resources.storage import StorageResource

    root = f"s3://{bucket}"
    store = make_store(
        root,
        endpoint_url=s3.endpoint_url,
        region=s3.region,
        access_key_id=s3.access_key,
        secret_access_key=s3.secret_key,
    )
    for name in REGIONS:
        add_region(store, Region(name, *FOOTPRINT, "earth-search"))
    t0 = time.perf_counter()
    fill(client, bucket, history_keys(size, today))
    print(f"  {size} objects written in {time.perf_counter() - t0:.0f} s", flush=True)
    time.sleep(2.1)  # the history settles (LastModified has whole seconds)
    resources = {
        "storage": StorageResource(
            root=root,
            endpoint_url=s3.endpoint_url,
            region=s3.region,
            access_key_id=s3.access_key,
            secret_access_key=s3.secret_key,
        ),
        "arrivals": ArrivalsResource(settle_seconds=1.0),
    }
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("regions", REGIONS)
    first = scene_arrivals(dg.build_sensor_context(instance=instance, resources=resources))
    since = max(
        o["LastModified"]
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="incoming/")
        for o in page.get("Contents", [])
    )
    time.sleep(1.1)
    new = [f"incoming/{r}/{today}/new-{i}.json" for r in REGIONS for i in range(NEW_PER_REGION)]
    fill(client, bucket, new)
    time.sleep(2.1)  # the new items settle
    return instance, resources, first.cursor, since, set(new)


def tick(instance, resources, cursor) -> tuple[float, set[str], dict]:
    import dagster as dg

    from geo_assets.triggers.arrivals import scene_arrivals

    t0 = time.perf_counter()
    result = scene_arrivals(dg.build_sensor_context(instance=instance, resources=resources, cursor=cursor))
    seconds = time.perf_counter() - t0
    keys = {ref.rsplit("@", 1)[0] for r in result.run_requests for ref in r.tags["geo-assets/arrivals"].split(" ")}
    return seconds, keys, json.loads(result.cursor)


def stock(client, bucket: str, since) -> tuple[float, set[str]]:
    from dagster_aws.s3.sensor import get_objects

    t0 = time.perf_counter()
    objects = get_objects(bucket, prefix="incoming/", since_last_modified=since, client=client)
    return time.perf_counter() - t0, {o["Key"] for o in objects}


def count_requests(instance, resources, cursor) -> tuple[int, int]:
    """Listing requests and keys listed by one tick (the watch's own counts, outside the timed runs)."""
    from geo_assets.geo.arrivals import WatchState

    store = resources["storage"].store()
    state = WatchState.from_json(json.loads(cursor)["watch"])
    t = resources["arrivals"].watcher().tick(store, state, time.time())
    return t.requests, t.listed


def main(argv: list[str] | None = None) -> int:
    import boto3

    from devtools.emulators.s3 import seaweedfs

    ap = argparse.ArgumentParser(prog="python -m bench.sensor_tick", description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="buckets of 1000 and 2000 objects, 3 repeats")
    args = ap.parse_args(argv)
    sizes, repeats = ([1000, 2000], 3) if args.quick else (args.sizes, args.repeats)
    if any(not 100 <= s <= 1_000_000 for s in sizes) or not 1 <= repeats <= 50:
        ap.error("sizes must be between 100 and 1000000 objects, repeats between 1 and 50")
    info = machine_info()
    today = datetime.now(UTC).date()
    buckets = {s: f"bench-{s}" for s in sizes}
    rows = []
    with (
        tempfile.TemporaryDirectory(prefix="geo-assets-sensor-tick-") as tmp,
        seaweedfs(Path(tmp) / "s3", list(buckets.values()), "bench-key", "bench-secret-key") as s3,
    ):
        client = boto3.client(
            "s3",
            endpoint_url=s3.endpoint_url,
            region_name=s3.region,
            aws_access_key_id=s3.access_key,
            aws_secret_access_key=s3.secret_key,
        )
        for size in sizes:
            print(f"bucket of {size} objects:", flush=True)
            instance, resources, cursor, since, new = prepare(client, s3, buckets[size], size, today)
            times = {"tick": [], "get_objects": []}
            for _ in range(repeats):
                seconds, keys, _ = tick(instance, resources, cursor)
                if keys != new:
                    raise AssertionError(f"the tick found {len(keys)} keys, not the {len(new)} new ones")
                times["tick"].append(seconds)
                seconds, keys = stock(client, buckets[size], since)
                if keys != new:
                    raise AssertionError(f"get_objects found {len(keys)} keys, not the {len(new)} new ones")
                times["get_objects"].append(seconds)
            requests, listed = count_requests(instance, resources, cursor)
            row = {
                "size": size,
                "tick_s": statistics.median(times["tick"]),
                "get_objects_s": statistics.median(times["get_objects"]),
                "tick_requests": requests,
                "tick_listed": listed,
                "get_objects_listed": size + len(new),
            }
            rows.append(row)
            print(
                f"  tick {row['tick_s']:.3f} s ({requests} requests, {listed} keys listed); "
                f"get_objects {row['get_objects_s']:.3f} s ({size + len(new)} keys listed)",
                flush=True,
            )
    (REPO / "bench" / "results").mkdir(parents=True, exist_ok=True)
    (REPO / "bench" / "results" / "sensor_tick.json").write_text(json.dumps({"rows": rows, "machine": info}, indent=1))
    lines = [
        "## Sensor tick: 100 new objects in buckets of growing size",
        "",
        "One `scene_arrivals` tick (the sensor function from its cursor: listings, catalogue read, run requests) that finds "
        "100 new items (10 regions x 10, today) in an S3 bucket (SeaweedFS on 127.0.0.1) whose history holds 10 regions x "
        "3 items a day going back size / 30 days, beside `dagster_aws.s3.sensor.get_objects(bucket, 'incoming/', "
        "since_last_modified=...)` on the same bucket. Both return the same 100 keys (checked). Median of "
        f"{repeats} alternating runs. Target: a tick of at most 1 s, flat in the bucket's size. "
        "`.venv/bin/python -m bench.sensor_tick`" + (" --quick" if args.quick else "") + ".",
        "",
        "| objects in bucket | tick s | tick listing requests | keys listed | get_objects s | keys listed |",
        "|---:|---:|---:|---:|---:|---:|",
        *(
            f"| {r['size']} | **{r['tick_s']:.3f}** | {r['tick_requests']} | {r['tick_listed']} | {r['get_objects_s']:.3f} | "
            f"{r['get_objects_listed']} |"
            for r in rows
        ),
        "",
        "The tick lists each region folder from 8 days back (lookback_days 7: one request each, plus the folder listing) and "
        "spends sweep_seconds (0.25 s, one page of 1000 keys at least) on the sweep of older keys; get_objects lists every key "
        "under the prefix on every call.",
        "",
        f"Machine: {info['nproc']} cores ({info['cpu_model']}), Python {info['python']}, dagster {info['dagster']}, "
        f"{info['date']}; 1-min load average {info['loadavg_1min_at_start']} at the start, {round(os.getloadavg()[0], 2)} at the end.",
    ]
    write_section("sensor-tick", MEASURES, "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
