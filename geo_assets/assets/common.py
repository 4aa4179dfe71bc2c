"""Small helpers shared by the asset modules: catalogue, manifests of other partitions, run tags."""

import hashlib
import json
import warnings
from collections.abc import Callable, Mapping, Sequence

import dagster as dg

from geo_assets.geo.acquisitions import imagery_dates, imagery_variants, pick_imagery  # noqa: F401 (the assets' names for them)
from geo_assets.geo.ground import tile_ground
from geo_assets.geo.manifests import DatasetItem, DatasetManifest, Ground, ImageryManifest, LabelsManifest
from geo_assets.geo.regions import RegionCatalogue, load_catalogue
from geo_assets.geo.store import ObjectNotFoundError, Store
from geo_assets.ml.registry import input_versions  # noqa: F401 (the assets' name for it)
from geo_assets.partitions import partition_keys, split_key
from resources import leases
from resources.storage import PartitionManifests, dims_path, manifest_key

TAG_PREFIX = "geo-assets/"


def catalogue(store: Store) -> RegionCatalogue:
    return load_catalogue(store)


def tag_run(context: dg.AssetExecutionContext, **tags: object) -> None:
    """Record what this run worked on (region, source, model, version) as run tags, for the UI's filters."""
    context.instance.add_run_tags(
        context.run.run_id, {TAG_PREFIX + k.replace("_", "-"): str(v) for k, v in tags.items()}
    )


def materialised_in_run(context: dg.AssetExecutionContext, asset: str) -> dict[str, dict]:
    """Partition key -> metadata of each materialisation of `asset` this run has made so far (read
    once per step): which variant an upstream step of this run wrote."""
    records = context.instance.get_records_for_run(
        context.run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION
    ).records
    found = {}
    for record in records:
        event = record.event_log_entry.asset_materialization
        if event and event.asset_key == dg.AssetKey(asset) and event.partition:
            found[str(event.partition)] = {k: v.value for k, v in event.metadata.items()}
    return found


def run_assets(context: dg.AssetExecutionContext) -> set[str]:
    """The assets this run materialises (its selection, or its whole job)."""
    keys = context.run.asset_selection or context.job_def.asset_layer.selected_asset_keys
    return {k.to_user_string() for k in keys}


def labels_key(region: str) -> str:
    return manifest_key("labels", region)


def labels_manifest(store: Store, region: str) -> LabelsManifest:
    key = labels_key(region)
    try:
        return store.read_json(key)
    except ObjectNotFoundError:
        raise FileNotFoundError(f"no labels for region {region!r}: materialise labels[{region}] first") from None


def read_ground(imagery: ImageryManifest) -> Ground:
    """The ground a training or evaluation step may read for one acquisition: the boxes of its imagery
    tiles (load_pairs reads those that have labels, whole; margins come from the same tiles)."""
    return tile_ground(imagery["crs"], [t["bounds"] for t in imagery["tiles"]])


def acquisition_ground(store: Store, item: DatasetItem) -> Ground:
    """The ground of a set item recorded before grounds were kept: the tiles of the imagery manifest it
    names, else of every variant of its acquisition stored now (more ground refuses more, never less)."""
    try:
        return read_ground(store.read_json(item["imagery"]))
    except (KeyError, ObjectNotFoundError):
        pass
    variants = list(imagery_variants(store, item["region"], item["date"]).values())
    if not variants:
        raise FileNotFoundError(f"no imagery_tiles for {item['region']}/{item['date']}: its ground cannot be judged")
    crs = variants[0]["crs"]
    return tile_ground(crs, [t["bounds"] for m in variants if m["crs"] == crs for t in m["tiles"]])


def digest(value: object) -> str:
    """A short content hash of a JSON-able value: the data version of a manifest."""
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:16]


def output(manifest: Mapping[str, object], metadata: dict) -> dg.Output:
    """The manifest with its content digest as Dagster's data version: a rerun that stores the same
    pixels is seen as no change, a changed tile as a change that marks dependents stale."""
    version = digest(manifest)
    with warnings.catch_warnings():  # data_version is marked beta, and is what staleness is built on
        warnings.simplefilter("ignore", dg.BetaWarning)
        return dg.Output(
            manifest, metadata={**metadata, "manifest_digest": version}, data_version=dg.DataVersion(version)
        )


def dataset(
    store: Store,
    regions: list[str],
    dates: list[str],
    acquisitions: Sequence[str] = (),
    pinned: dict | None = None,
    bands: list[str] | None = None,
) -> DatasetManifest:
    """The (imagery, labels) acquisitions of a training or evaluation set, each with its data version:
    exactly `acquisitions` (REGION/DATE) when given, else `dates` of each region, else every date of a
    region that has imagery now. The manifest records the dates it resolved to, so the set is fixed.
    `pinned` (REGION/DATE -> what a registered evaluation set reads, `set_variants`) fixes the imagery
    variant and the labels' cut of those acquisitions: a set registered on them never switches to other
    imagery or labels by itself, it is refused instead. `bands` (a model's definition) are the bands the set
    gives its model, each of which every acquisition's imagery must hold; default: the bands they all hold."""
    cat = catalogue(store)
    chosen: dict[str, list[str]] = {}
    for acquisition in acquisitions:
        region, date = acquisition.split("/")
        chosen.setdefault(region, []).append(date)
    items: list[DatasetItem] = []
    for region in regions:
        if acquisitions and region not in chosen:
            continue
        r = cat.get(region)
        labels = labels_manifest(store, region)
        region_dates = chosen.get(region) or dates or imagery_dates(store, region)
        if not region_dates:
            raise FileNotFoundError(f"region {region!r} has no imagery_tiles yet: materialise some dates first")
        for date in region_dates:
            pin = (pinned or {}).get(f"{region}/{date}")
            if pin:
                key, imagery = _pinned(store, region, date, labels, pin)
            else:
                # The variant cut like the labels, with the most bands (a set keeps the bands all its items have).
                key, imagery = pick_imagery(
                    store, region, date, tile_size=labels["tile_size"], prefer_source=r.source, widest=True
                )
            items.append(
                {
                    "region": region,
                    "date": date,
                    "bands": imagery["bands"],
                    "tiles": len(imagery["tiles"]),
                    "imagery": key,
                    "imagery_version": digest(imagery),
                    "labels": labels_key(region),
                    "labels_version": digest(labels),
                    "labels_cut": {"source": labels["source"], "tile_size": labels["tile_size"]},
                    "footprint": {"crs": r.crs, "bbox": list(r.bbox)},
                    "ground": read_ground(imagery),  # what is read: whole tiles overhang the box
                }
            )
    # A model sees the bands every acquisition has (e.g. a 3-band Landsat sample beside 6-band scenes).
    shared = [b for b in items[0]["bands"] if all(b in i["bands"] for i in items)]
    if not shared:
        raise ValueError(f"the selected imagery shares no band: {sorted({tuple(i['bands']) for i in items})}")
    for item in items if bands else []:
        lacking = [b for b in bands or () if b not in item["bands"]]
        if lacking:
            raise ValueError(
                f"the imagery of {item['region']}/{item['date']} ({item['imagery']}) has bands "
                f"{', '.join(item['bands'])}: it lacks {', '.join(lacking)}; cut imagery_tiles with them first"
            )
    return {"regions": regions, "dates": sorted({i["date"] for i in items}), "bands": bands or shared, "items": items}


def _pinned(store: Store, region: str, date: str, labels: LabelsManifest, pin: dict) -> tuple[str, ImageryManifest]:
    cut = {"source": labels["source"], "tile_size": labels["tile_size"]}
    if cut != pin["labels"]:
        raise ValueError(
            f"the labels of region {region!r} are now cut at {cut['tile_size']} px from {cut['source']}; the registered "
            f"evaluation set reads {region}/{date} with labels cut at {pin['labels']['tile_size']} px from "
            f"{pin['labels']['source']}. Materialise labels[{region}] with that cut again, or register the set anew "
            "with `geo-assets model evaluation-set`"
        )
    try:
        return pin["imagery"], store.read_json(pin["imagery"])
    except ObjectNotFoundError:
        raise FileNotFoundError(
            f"the registered evaluation set reads {region}/{date} from imagery {pin['imagery']}, which is no longer "
            "stored. Materialise that variant again, or register the set anew with `geo-assets model evaluation-set`"
        ) from None


def dataset_metadata(manifest: DatasetManifest) -> dict:
    rows = [
        dg.TableRecord(
            {
                "region": i["region"],
                "date": i["date"],
                "tiles": i["tiles"],
                "imagery_version": i["imagery_version"],
                "labels_version": i["labels_version"],
            }
        )
        for i in manifest["items"]
    ]
    schema = dg.TableSchema(
        columns=[
            dg.TableColumn(c, t)
            for c, t in (
                ("region", "string"),
                ("date", "string"),
                ("tiles", "int"),
                ("imagery_version", "string"),
                ("labels_version", "string"),
            )
        ]
    )
    return {
        "regions": ", ".join(manifest["regions"]),
        "acquisitions": len(manifest["items"]),
        "tiles": sum(i["tiles"] for i in manifest["items"]),
        "bands": ", ".join(manifest["bands"]),
        "inputs": dg.MetadataValue.table(rows, schema=schema),
    }


def each_partition(
    context: dg.AssetExecutionContext, build: Callable[[str, str, dict | None], dg.Output], upstream: dict | None = None
) -> dg.Output:
    """Materialise every region x date partition of this run with `build(region, date, upstream manifest)`.

    A run of one partition returns build's Output as it is. A run of a range (the daemon's backfill runs
    and `dagster asset materialize --partition-range`, under BackfillPolicy.single_run) builds the
    partitions one after another in this one process, attaches each one's metadata to its own
    materialisation, and hands the IO manager their manifests by partition. Dagster gives a step one
    data version, so a range's partitions share the digest of all their manifests."""
    keys = partition_keys(context, split_key)
    # One writer per partition, whatever launched the run.
    store = context.resources.storage.store()
    with leases.writing(context, store, [dims_path(dict(zip(("region", "date"), split_key(k)))) for k in keys]):
        return _each_partition(context, build, upstream, keys)


def _each_partition(context, build, upstream, keys) -> dg.Output:
    if len(keys) == 1:
        return build(*split_key(keys[0]), upstream)
    manifests, regions = PartitionManifests(), set()
    for key in keys:
        region, date = split_key(key)
        result = build(region, date, upstream[key] if isinstance(upstream, PartitionManifests) else upstream)
        manifests[key] = result.value
        context.add_asset_metadata(dict(result.metadata), partition_key=key)
        regions.add(region)
    first, last = (split_key(k)[1] for k in (keys[0], keys[-1]))
    tag_run(context, region=",".join(sorted(regions)), date=f"{first}...{last}")
    return output(manifests, {"partitions": len(keys)})
