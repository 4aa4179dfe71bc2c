"""The storage resource and the manifest IO manager.

Assets exchange small JSON manifests (keys, bounds, stats), never pickled rasters; the rasters
themselves are COGs in the store, written by the tile work units.
"""


import dagster as dg

from geo_assets.geo.store import Store, validate_key


class StorageResource(dg.ConfigurableResource):
    """Where every output lives, addressed by a root URI (file:// now; gs:// and s3:// planned)."""

    root: str

    def store(self) -> Store:
        return Store(self.root)


def partition_path(context: dg.InputContext | dg.OutputContext) -> str:
    """The partition part of a manifest key: `region=x/date=y` for multi-partitions, else the key."""
    if not context.has_asset_partitions:
        return "all"
    key = context.asset_partition_key
    if isinstance(key, dg.MultiPartitionKey):
        return dims_path(key.keys_by_dimension)
    return key


def dims_path(dims: dict[str, str]) -> str:
    """`region=x/date=y`: region first, so one region's partitions share a prefix."""
    order = sorted(dims, key=lambda d: (d != "region", d))
    return "/".join(f"{d}={dims[d]}" for d in order)


def manifest_key(asset: str, partition: str) -> str:
    return validate_key(f"manifests/{asset}/{partition}.json")


class ManifestIOManager(dg.ConfigurableIOManager):
    storage: dg.ResourceDependency[StorageResource]

    def _key(self, context: dg.InputContext | dg.OutputContext) -> str:
        return manifest_key("/".join(context.asset_key.path), partition_path(context))

    def handle_output(self, context: dg.OutputContext, obj: dict) -> None:
        if not isinstance(obj, dict):
            raise TypeError(f"assets must return a manifest dict, got {type(obj).__name__}")
        key = self._key(context)
        self.storage.store().write_json(key, obj)
        context.add_output_metadata({"manifest": dg.MetadataValue.path(self.storage.store().uri(key))})

    def load_input(self, context: dg.InputContext) -> dict:
        key = self._key(context)
        try:
            return self.storage.store().read_json(key)
        except FileNotFoundError:
            raise FileNotFoundError(
                f"upstream asset {context.asset_key.to_user_string()} has no output for partition "
                f"{context.asset_partition_key}: materialise it first (no manifest at {key})"
            ) from None
