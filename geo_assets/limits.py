"""Deployment limits: how much one partition or one backfill may ask for.

They are deployment settings (environment variables, declared in geo_assets/settings.py), not run
config, so no launch can raise its own ceiling. Each is read when it is used, so a daemon, a run and
the CLI agree on the value in force.
"""

from geo_assets.settings import by_name

__all__ = ["LEASE_WAIT", "MAX_BACKFILL", "MAX_TILES", "lease_wait_s", "max_backfill_partitions", "max_tiles"]

MAX_TILES = by_name("GEO_ASSETS_MAX_TILES")  # 10,000: a 256 km square at 10 m and 256 px tiles; manifests stay a few MB
MAX_BACKFILL = by_name("GEO_ASSETS_MAX_BACKFILL_PARTITIONS")  # 400: a year of dates for one region, with room
LEASE_WAIT = by_name("GEO_ASSETS_LEASE_WAIT_S")  # 1800: a backfill behind an arrival run of the same partition waits


def max_tiles() -> int:
    """Tiles one region x date partition may hold (imagery, labels, predictions)."""
    return MAX_TILES.get()


def max_backfill_partitions() -> int:
    """Region x date partitions one `geo-assets backfill` may request."""
    return MAX_BACKFILL.get()


def lease_wait_s() -> int:
    """Seconds a step waits for a partition another active run is writing, before it fails naming that run."""
    return LEASE_WAIT.get()
