"""The map tests' world: tiny-field's imagery on two dates and a small model's predictions of both,
materialised in-process into a store and a Dagster home (tests/tiny_world.py), then served by a real
map server (and, for the UI test, a real Dagster webserver over that home)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import requests
from tiny_world import DATE, MODEL, TILES64, TINY, resources_for, train_tiny

from devtools.emulators import free_port
from geo_assets.cli.commands import register
from geo_assets.geo.regions import load_catalogue, save_catalogue
from geo_assets.geo.store import Store
from geo_assets.partitions import region_date_key
from resources.compute import LocalPoolCompute

ROOT = Path(__file__).resolve().parents[2]
DATE2 = "2024-07-01"  # the synthetic source images any date: a second acquisition to difference against


LINKS: dict[str, str] = {}  # asset -> the map URL in its materialisation's metadata (DATE)


def prepare(store: Store, instance: dg.DagsterInstance) -> str:
    """Catalogue tiny-field, train MODEL on it, predict and report both dates in `instance`; the model
    version. The map links of DATE's materialisations land in LINKS."""
    from geo_assets.assets.imagery import imagery_tiles
    from geo_assets.assets.predictions import predictions
    from geo_assets.assets.reports import region_report

    catalogue = load_catalogue(store)
    catalogue.add(TINY)
    save_catalogue(store, catalogue)
    register(instance, regions=[TINY.name], models=[MODEL])
    version = train_tiny(instance, store)
    resources = resources_for(store, LocalPoolCompute(workers=2))
    for date in (DATE2, DATE):  # DATE last: the latest materialisation, which the UI shows first
        ops = {"imagery_tiles": TILES64, "predictions": {"config": {"model": MODEL, "version": version}}}
        result = dg.materialize(
            [imagery_tiles, predictions, region_report],
            partition_key=region_date_key(TINY.name, date),
            resources=resources,
            instance=instance,
            run_config={"ops": ops},
        )
        assert result.success, date
        if date == DATE:
            for event in result.get_asset_materialization_events():
                materialization = event.step_materialization_data.materialization
                LINKS[materialization.asset_key.to_user_string()] = materialization.metadata["map"].url
    return version


def copy_store(source: Store, target: Store) -> None:
    """Every object of `source` at the same key in `target` (manifests name keys, not URIs)."""
    for key in [k for top in ("catalogue", "manifests", "imagery", "predictions", "models") for k in source.list(top)]:
        target.write_bytes(key, source.read_bytes(key))


@contextmanager
def map_server(env: dict, log: Path, timeout: float = 60, port: int | None = None) -> Iterator[str]:
    """`python -m geo_assets.map` on `port` (default: a free one) in `env`; yields its base URL; stopped by its pid."""
    port = port or free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "geo_assets.map", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(log, "w"),
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + timeout
        while True:
            try:
                if requests.get(f"{url}/healthz", timeout=2).ok:
                    break
            except requests.ConnectionError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"the map server did not start: {log.read_text()[-3000:]}")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
