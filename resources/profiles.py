"""Profiles: one dict of resources per deployment target, chosen by one environment variable.

GEO_ASSETS_PROFILE=local (default) runs on this machine: SQLite instance, files under the
Dagster home, a local thread pool. The gcp and aws profiles are planned.
"""


import os
from pathlib import Path

from geo_assets.geo.store import local_root
from resources.compute import LocalPoolCompute
from resources.storage import ManifestIOManager, StorageResource

PROFILE_ENV = "GEO_ASSETS_PROFILE"
PROFILES = ("local",)


def get_profile() -> str:
    profile = os.environ.get(PROFILE_ENV, "local")
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {PROFILE_ENV}={profile!r}; accepted: {', '.join(PROFILES)}")
    return profile


def dagster_home() -> Path:
    return Path(os.environ.get("DAGSTER_HOME") or ".dagster_home").resolve()


def local_storage_root() -> str:
    """GEO_ASSETS_STORAGE_ROOT, else `storage/` inside the Dagster home, so one folder holds a laptop's state."""
    return os.environ.get("GEO_ASSETS_STORAGE_ROOT") or local_root(dagster_home() / "storage")


def _local() -> dict:
    storage = StorageResource(root=local_storage_root())
    return {
        "storage": storage,
        "compute": LocalPoolCompute(workers=int(os.environ.get("GEO_ASSETS_WORKERS", "0"))),
        "io_manager": ManifestIOManager(storage=storage),
    }


def resource_defs(profile: str | None = None) -> dict:
    return {"local": _local}[profile or get_profile()]()
