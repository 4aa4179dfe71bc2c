"""Sensors that keep the instance in step with the store.

- `region_partitions`: the region catalogue is the one source of truth for regions. A partition
  added in the UI or over GraphQL without a footprint is removed again (with a log line naming
  `geo-assets region add`), and a catalogued region without a partition gets one. It removes only
  against a catalogue it has read: when the catalogue cannot be read (corrupt, access denied, an
  unreachable bucket), or the storage root holds none while partitions outside the built-in regions
  exist (a root that points elsewhere), the tick fails naming the storage root and changes nothing.
  It also removes model partitions whose keys are no valid model name (`../evil`, empty, with a
  newline: the UI and GraphQL add any string), which every path of ours refuses to add.
- `input_changes`: when an acquisition that a training or evaluation set lists gets a new data
  version, that set is materialised again with exactly the acquisitions it lists (a cheap run that
  reads manifests), so it takes the new data version and Dagster marks the models built on it stale.
  It never selects again: new dates of a region never join a set, and it never registers a set.
  (An observation would not do: Dagster judges a materialisable asset's upstream by its
  materialisations.) The run key is the set's new data version, so each change runs once.
- `scene_arrivals` (off by default; in `arrivals.py`): imagery_tiles for each partition whose
  scene landed in the storage.
"""

import json

import dagster as dg

from geo_assets.assets.common import digest
from geo_assets.geo.acquisitions import imagery_key, legacy_imagery_key
from geo_assets.geo.messages import shown
from geo_assets.geo.regions import CATALOGUE_KEY, RegionCatalogue, stored_catalogue
from geo_assets.partitions import MODELS, REGIONS, region_date_partitions, validate_model_name
from geo_assets.triggers.arrivals import scene_arrivals
from resources.storage import StorageResource

DATA_VERSION_TAG = "dagster/data_version"
DATASETS = ("training_set", "evaluation_set")
WATCHED = {"imagery_tiles": "imagery_version", "labels": "labels_version"}
EVENTS_PER_TICK = 1000  # bounded work per tick; the cursor picks up the rest on the next one
NAMED = 20  # partitions named in a message; the rest are counted


class CatalogueUnavailable(RuntimeError):
    """The region catalogue could not be read: the tick changes no partition."""


@dg.sensor(minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING)
def region_partitions(context: dg.SensorEvaluationContext, storage: StorageResource) -> dg.SensorResult:
    store = storage.store()
    try:
        stored = stored_catalogue(store)
    except (ValueError, OSError) as exc:  # corrupt, access denied, no such bucket, unreachable
        raise CatalogueUnavailable(
            f"the region catalogue under storage root {store.root} cannot be read, so no region partition was "
            f"added or removed: {exc}"
        ) from None
    catalogue = set((stored or RegionCatalogue()).names())
    partitions = set(context.instance.get_dynamic_partitions(REGIONS))
    unknown, missing = sorted(partitions - catalogue), sorted(catalogue - partitions)
    if unknown and stored is None:
        # No catalogue is no evidence: a storage root that points elsewhere holds none either.
        raise CatalogueUnavailable(
            f"no region catalogue at {store.uri(CATALOGUE_KEY)} (storage root {store.root}), so region partition(s) "
            f"{', '.join(unknown[:NAMED])}{f' and {len(unknown) - NAMED} more' if len(unknown) > NAMED else ''} "
            "were kept and nothing was added: if this storage root is the right one, run "
            "`geo-assets init` to create its catalogue; otherwise fix GEO_ASSETS_STORAGE_ROOT"
        )
    for name in unknown:
        context.log.warning(
            f"region partition {shown(name)} has no footprint in the region catalogue and was removed: "
            f"add regions with `geo-assets region add {name} --bbox MINX MINY MAXX MAXY --crs EPSG:XXXX`"
        )
    requests: list[dg.AddDynamicPartitionsRequest | dg.DeleteDynamicPartitionsRequest] = []
    if unknown:
        requests.append(dg.DeleteDynamicPartitionsRequest(REGIONS, unknown))
    invalid_models = [k for k in context.instance.get_dynamic_partitions(MODELS) if not _valid_model_name(k)]
    for key in invalid_models:
        context.log.warning(
            f"model partition {shown(key)} is not a valid model name and was removed: use lowercase letters, "
            "digits and hyphens (not at either end), at most 63 characters"
        )
    if invalid_models:
        requests.append(dg.DeleteDynamicPartitionsRequest(MODELS, invalid_models))
    if missing:
        requests.append(dg.AddDynamicPartitionsRequest(REGIONS, missing))
    return dg.SensorResult(dynamic_partitions_requests=requests)


def _valid_model_name(key: str) -> bool:
    try:
        validate_model_name(key)
    except ValueError:
        return False
    return True


def _changed_inputs(context, cursor: dict) -> tuple[dict[tuple[str, str], str], dict]:
    """{(field, region/date or region): new data version} from materialisations after the cursor."""
    changes = {}
    for asset, field in WATCHED.items():
        result = context.instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), after_storage_id=cursor.get(asset)),
            limit=EVENTS_PER_TICK,
            ascending=True,
        )
        for record in result.records:
            event = record.asset_materialization
            # The manifest's own digest: a range run gives all its partitions one Dagster data version.
            digest_entry = event.metadata.get("manifest_digest")
            version = digest_entry.value if digest_entry is not None else (event.tags or {}).get(DATA_VERSION_TAG)
            if version is None or event.partition is None:
                continue
            if asset == "imagery_tiles":  # one variant of the acquisition: its manifest key, as sets record it
                dims = region_date_partitions.get_partition_key_from_str(event.partition).keys_by_dimension
                cut = event.metadata.get("variant")
                key = (
                    imagery_key(dims["region"], dims["date"], cut.value)
                    if cut is not None
                    else legacy_imagery_key(dims["region"], dims["date"])
                )
                changes[(field, key)] = version
            else:
                changes[(field, event.partition)] = version
            cursor[asset] = record.storage_id
    return changes, cursor


def _refreshed(manifest: dict, changes: dict) -> tuple[dict, list[str]] | None:
    """The set's manifest with its inputs' current data versions, and what changed; None if nothing did."""
    items, changed = [], []
    for item in manifest["items"]:
        updated = dict(item)
        for field, key in (("imagery_version", item["imagery"]), ("labels_version", item["region"])):
            new = changes.get((field, key))
            if new is not None and new != item[field]:
                updated[field] = new
                changed.append(f"{field.removesuffix('_version')} {key}")
        items.append(updated)
    return ({**manifest, "items": items}, changed) if changed else None


@dg.sensor(minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING, job_name="datasets_job")
def input_changes(context: dg.SensorEvaluationContext, storage: StorageResource) -> dg.SensorResult:
    cursor = json.loads(context.cursor) if context.cursor else {}
    changes, cursor = _changed_inputs(context, cursor)
    requests = []
    if changes:
        store = storage.store()
        for asset in DATASETS:
            for key in store.list(f"manifests/{asset}"):
                manifest = store.read_json(key)
                refreshed = _refreshed(manifest, changes)
                if refreshed is None:
                    continue
                changed = ", ".join(sorted(set(refreshed[1])))
                model = key.rsplit("/", 1)[1].removesuffix(".json")
                context.log.info(f"{asset}[{model}]: inputs changed ({changed}); selecting it again")
                requests.append(
                    dg.RunRequest(
                        run_key=f"{asset}:{model}:{digest(refreshed[0])}",
                        partition_key=model,
                        asset_selection=[dg.AssetKey(asset)],
                        # The set's own acquisitions, never its selection again: `dates: []` resolved once,
                        # when the set was materialised, so unrelated new dates never join it.
                        run_config={
                            "ops": {
                                asset: {
                                    "config": {
                                        "regions": manifest["regions"],
                                        "acquisitions": [f"{i['region']}/{i['date']}" for i in manifest["items"]],
                                    }
                                }
                            }
                        },
                        tags={"geo-assets/changed-inputs": changed[:255]},
                    )
                )
    return dg.SensorResult(run_requests=requests, cursor=json.dumps(cursor))


SENSORS = [region_partitions, input_changes, scene_arrivals]
