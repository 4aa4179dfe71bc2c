"""The storage resource and the manifest IO manager.

Assets exchange small JSON manifests (keys, bounds, stats), never pickled rasters; the rasters
themselves are COGs in the store, written by the tile work units.
"""

from collections import Counter
from collections.abc import Mapping

import dagster as dg
from pydantic import PrivateAttr

from geo_assets.engine.ledger import TileLedger
from geo_assets.geo import retries
from geo_assets.geo.store import BucketNotFoundError, Store, make_store, validate_key
from resources import leases


class StorageResource(dg.ConfigurableResource):
    """Where every output lives, addressed by a root URI: file://, s3://bucket/prefix or gs://bucket/prefix.

    Connection settings are optional: without them the cloud's standard credential chain applies
    (instance/pod roles, GOOGLE_APPLICATION_CREDENTIALS). Pass secrets as `dg.EnvVar("NAME")`: the UI
    then shows the variable's name, not its value. The store never puts them in messages or logs.
    """

    root: str
    endpoint_url: str | None = None  # an S3-compatible service or an emulator, e.g. http://127.0.0.1:8333
    region: str | None = None  # s3:// only
    access_key_id: str | None = None  # s3:// only
    secret_access_key: str | None = None  # s3:// only
    anonymous: bool = False  # unsigned requests (public buckets, emulators)
    project: str | None = None  # gs:// only

    def store(self) -> Store:
        settings = {
            name: self.resolved(name)
            for name in ("root", "endpoint_url", "region", "access_key_id", "secret_access_key", "project")
        }
        return make_store(settings.pop("root"), anonymous=self.anonymous, **settings)

    def resolved(self, field: str):
        """The value of `field`. Inside a run Dagster has already replaced `dg.EnvVar`s by their values;
        outside one (the CLI, the demo's summary) the field still holds the EnvVar, a str naming the variable."""
        value = getattr(self, field)
        if isinstance(value, dg.EnvVar):
            resolved = value.get_value()
            if resolved is None:
                raise ValueError(f"StorageResource.{field}: environment variable {str(value)!r} is not set")
            return resolved
        return value


def partition_path(context: dg.InputContext | dg.OutputContext, key: str | None = None) -> str:
    """The partition part of a manifest key: `region=x/date=y` for multi-partitions, else the key."""
    if not context.has_asset_partitions:
        return "all"
    key = context.asset_partition_key if key is None else key
    partitions_def = context.asset_partitions_def
    if isinstance(partitions_def, dg.MultiPartitionsDefinition) and not isinstance(key, dg.MultiPartitionKey):
        key = partitions_def.get_partition_key_from_str(key)
    if isinstance(key, dg.MultiPartitionKey):
        return dims_path(key.keys_by_dimension)
    return key


class PartitionManifests(dict):
    """The manifests of a run that materialises a range of partitions (a backfill policy's single run),
    by partition key: each is stored, and read back, as if its partition had run alone."""


def dims_path(dims: Mapping[str, str]) -> str:
    """`region=x/date=y`: region first, so one region's partitions share a prefix."""
    order = sorted(dims, key=lambda d: (d != "region", d))
    return "/".join(f"{d}={dims[d]}" for d in order)


def manifest_key(asset: str, partition: str) -> str:
    return validate_key(f"manifests/{asset}/{partition}.json")


# Asset metadata flag: this asset's outputs belong to one model version, so its manifests are keyed
# `<model>/<version>/<partition>` and another version's run never replaces them.
KEYED_BY_MODEL_VERSION = "geo-assets/keyed-by-model-version"


# Asset metadata flag: this asset's partitions hold variants (bands, tile size, source) side by side, so
# its manifests are keyed `<partition>/<variant>`, the variant named by the manifest itself.
KEYED_BY_VARIANT = "geo-assets/keyed-by-variant"


def model_manifest_key(asset: str, model: str, version: str, partition: str, variant: str, margin: int) -> str:
    """Everything that changes a prediction's pixels: model version, imagery variant and margin."""
    return manifest_key(asset, f"{model}/{version}/{partition}/{variant}/margin-{margin}px")


def _keyed_by(context: dg.InputContext | dg.OutputContext, flag: str) -> bool:
    output = context if isinstance(context, dg.OutputContext) else context.upstream_output
    return bool(output is not None and (output.definition_metadata or {}).get(flag))


def _publish(store: Store, context: dg.OutputContext, partition: str, key: str, manifest: dict) -> None:
    """Write a manifest, the step's output becoming visible: only while the step still holds the
    partition's lease, if it took one (resources/leases.py), which is then released."""
    lease = leases.held(store, "/".join(context.asset_key.path), partition)
    if lease is not None:  # an orphaned writer, whose run has ended, stops here
        leases.check_publish(store, lease, context.step_context.instance)
    store.write_json(key, manifest)
    if "prefix" in manifest:  # tile work's completion records: the manifest now says what they said
        TileLedger(store, manifest["prefix"]).forget()
    if lease is not None:
        leases.release_all(store, [lease])


class ManifestIOManager(dg.ConfigurableIOManager):
    storage: dg.ResourceDependency[StorageResource]
    # Store retries of this process (geo/retries.py) already reported: each output reports those since.
    _retries_reported: Counter = PrivateAttr(default_factory=Counter)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self._retries_reported = retries.totals()

    def _report_retries(self, context: dg.OutputContext) -> None:
        """One line in the step's log for the requests retried since the last report: the store's, and
        GDAL's raster reads of the store and of sources (each operation's own line goes to the process
        log, or with tile work to the step's log)."""
        now = retries.totals()
        since = now - self._retries_reported
        self._retries_reported = now
        if since:
            context.log.warning(f"requests retried in this step (store and raster reads): {retries.describe(since)}")

    def _key(
        self, context: dg.InputContext | dg.OutputContext, obj: dict | None = None, partition: str | None = None
    ) -> str:
        asset = "/".join(context.asset_key.path)
        keyed = [f for f in (KEYED_BY_MODEL_VERSION, KEYED_BY_VARIANT) if _keyed_by(context, f)]
        if keyed and obj is None:
            raise TypeError(
                f"{asset} is keyed by {keyed[0].rsplit('by-', 1)[1]}: read the variant you need, not an input"
            )
        if KEYED_BY_MODEL_VERSION in keyed:
            assert obj is not None  # refused above
            return model_manifest_key(
                asset, obj["model"], obj["version"], partition_path(context, partition), obj["variant"], obj["margin"]
            )
        if KEYED_BY_VARIANT in keyed:
            assert obj is not None
            return manifest_key(asset, f"{partition_path(context, partition)}/{obj['variant']}")
        return manifest_key(asset, partition_path(context, partition))

    def handle_output(self, context: dg.OutputContext, obj: dict) -> None:
        if not isinstance(obj, dict):
            raise TypeError(f"assets must return a manifest dict, got {type(obj).__name__}")
        store = self.storage.store()
        if isinstance(obj, PartitionManifests):
            for partition, manifest in obj.items():
                _publish(
                    store,
                    context,
                    partition_path(context, partition),
                    self._key(context, manifest, partition),
                    manifest,
                )
            self._report_retries(context)
            return
        key = self._key(context, obj)
        _publish(store, context, partition_path(context), key, obj)
        self._report_retries(context)
        context.add_output_metadata({"manifest": dg.MetadataValue.path(store.uri(key))})

    def load_input(self, context: dg.InputContext) -> dict:
        partitions = context.asset_partition_keys if context.has_asset_partitions else []
        if len(partitions) > 1:  # the upstream range of a range run
            return PartitionManifests({str(p): self._read(context, p) for p in partitions})
        return self._read(context)

    def _read(self, context: dg.InputContext, partition: str | None = None) -> dict:
        key = self._key(context, partition=partition)
        try:
            return self.storage.store().read_json(key)
        except BucketNotFoundError:  # a configuration error, not a missing upstream output
            raise
        except FileNotFoundError:
            raise FileNotFoundError(
                f"upstream asset {context.asset_key.to_user_string()} has no output for partition "
                f"{partition or context.asset_partition_key}: materialise it first (no manifest at {key})"
            ) from None
