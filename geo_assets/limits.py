"""Deployment limits: how much one partition or one backfill may ask for.

They are deployment settings (environment variables), not run config, so no launch can raise its own
ceiling. Each is read when it is used, so a daemon, a run and the CLI agree on the value in force.
"""

import os

MAX_TILES_ENV = "GEO_ASSETS_MAX_TILES"
MAX_BACKFILL_ENV = "GEO_ASSETS_MAX_BACKFILL_PARTITIONS"
DEFAULT_MAX_TILES = 10_000  # a 256 km square at 10 m and 256 px tiles; manifests stay a few MB
DEFAULT_MAX_BACKFILL = 400  # a year of dates for one region, with room
CEILING = 10_000_000  # no setting goes beyond this: it would only defer the failure to memory


def _positive_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:  # also "inf", "nan", "1e3", "2.5"
        value = 0
    if not 1 <= value <= CEILING:
        raise ValueError(f"{name}={raw!r}: must be a whole number between 1 and {CEILING:,}")
    return value


def max_tiles() -> int:
    """Tiles one region x date partition may hold (imagery, labels, predictions)."""
    return _positive_int(MAX_TILES_ENV, DEFAULT_MAX_TILES)


def max_backfill_partitions() -> int:
    """Region x date partitions one `geo-assets backfill` may request."""
    return _positive_int(MAX_BACKFILL_ENV, DEFAULT_MAX_BACKFILL)


LEASE_WAIT_ENV = "GEO_ASSETS_LEASE_WAIT_S"
DEFAULT_LEASE_WAIT_S = 1800  # a backfill behind an arrival run of the same partition waits, not fails
MAX_LEASE_WAIT_S = 86_400


def lease_wait_s() -> int:
    """Seconds a step waits for a partition another active run is writing, before it fails naming that run."""
    try:
        value = _positive_int(LEASE_WAIT_ENV, DEFAULT_LEASE_WAIT_S)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_LEASE_WAIT_S:
        raw = os.environ.get(LEASE_WAIT_ENV)
        raise ValueError(f"{LEASE_WAIT_ENV}={raw!r}: must be a whole number between 1 and {MAX_LEASE_WAIT_S:,}")
    return value
