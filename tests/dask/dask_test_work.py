"""Work units for the compute tests, importable where the test clusters run them (a LocalCluster's
spawned processes inherit sys.path; the `dask` CLI processes get this folder on PYTHONPATH)."""

import json
import logging
import os
import time
from pathlib import Path

log = logging.getLogger("geo_assets.test_work")


def echo(folder: str, tile: dict) -> dict:
    """Count this tile's runs in `folder`, log on the way, and return a manifest-like entry."""
    marker = Path(folder, f"{tile['key']}.runs")
    with open(marker, "a") as f:
        f.write(f"{os.getpid()}\n")
    log.info("tile %s on pid %s", tile["key"], os.getpid())
    if tile.get("warn"):
        log.warning("tile %s looks odd", tile["key"])
    if tile.get("fail"):
        raise ValueError(f"cannot read tile {tile['key']}: corrupt header")
    return {"key": tile["key"], "double": tile["value"] * 2}


def slow(folder: str, seconds: float, tile: dict) -> dict:
    """Announce the process that runs this tile (a test kills it), then take `seconds`."""
    announce = Path(folder, f"{tile['key']}.pid-new")
    announce.write_text(json.dumps(os.getpid()))
    announce.rename(announce.with_suffix(".pid"))  # whole, for the test that reads it
    time.sleep(seconds)
    return echo(folder, tile)


def runs(folder: str, key: str) -> int:
    marker = Path(folder, f"{key}.runs")
    return len(marker.read_text().split()) if marker.exists() else 0
