"""The cloud demo: the same graph on the aws and gcp profiles against local S3 and GCS servers.

It starts SeaweedFS (S3 API), fake-gcs-server (GCS API) and PostgreSQL (the deployed instances'
storage) on 127.0.0.1, runs `geo-assets demo` once per profile (local, aws, gcp) in fresh Dagster
homes with the profile's instance yaml, checks that every prediction tile is the same pixel for
pixel across the three, and stops the servers.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from devtools.emulators.gcs import fake_gcs
from devtools.emulators.s3 import seaweedfs
from devtools.postgres import postgres_server
from geo_assets.cli.demo import PREDICT
from geo_assets.geo.cog import read_raster
from geo_assets.geo.store import local_root, make_store

ROOT = Path(__file__).resolve().parents[1]
BUCKET, LOGS = "geo-assets", "geo-assets-logs"
# Credentials the local S3 server is started with; it checks request signatures against them.
DEMO_KEY, DEMO_SECRET = "geo-assets-demo", "geo-assets-demo-secret"


def profile_envs(workdir: Path, s3, gcs_url: str, pg=None) -> dict[str, dict[str, str]]:
    """The environment each profile reads: its storage root, endpoint and credential chain, and for
    the cloud profiles the PostgreSQL database of their instance (one database each)."""
    envs = {
        "local": {"GEO_ASSETS_PROFILE": "local", "GEO_ASSETS_STORAGE_ROOT": local_root(workdir / "local" / "storage")},
        "aws": {
            "GEO_ASSETS_PROFILE": "aws",
            "GEO_ASSETS_STORAGE_ROOT": f"s3://{BUCKET}/demo",
            "AWS_ENDPOINT_URL_S3": s3.endpoint_url,
            "AWS_ACCESS_KEY_ID": s3.access_key,
            "AWS_SECRET_ACCESS_KEY": s3.secret_key,
            "AWS_REGION": s3.region,
            "GEO_ASSETS_LOG_BUCKET": LOGS,
        },
        "gcp": {
            "GEO_ASSETS_PROFILE": "gcp",
            "GEO_ASSETS_STORAGE_ROOT": f"gs://{BUCKET}/demo",
            "STORAGE_EMULATOR_HOST": gcs_url,
            "GOOGLE_CLOUD_PROJECT": "geo-assets-demo",
            "GEO_ASSETS_LOG_BUCKET": LOGS,
        },
    }
    if pg is not None:
        for profile in ("aws", "gcp"):
            envs[profile].update(pg.create_database(f"demo_{profile}").env())
    return envs


def _store(env: dict[str, str]):
    return make_store(
        env["GEO_ASSETS_STORAGE_ROOT"],
        **(
            {
                "endpoint_url": env["AWS_ENDPOINT_URL_S3"],
                "access_key_id": env["AWS_ACCESS_KEY_ID"],
                "secret_access_key": env["AWS_SECRET_ACCESS_KEY"],
                "region": env["AWS_REGION"],
            }
            if "AWS_ENDPOINT_URL_S3" in env
            else {}
        ),
        **({"endpoint_url": env["STORAGE_EMULATOR_HOST"], "anonymous": True} if "STORAGE_EMULATOR_HOST" in env else {}),
    )


def _predictions(store, model: str) -> str:
    """Where the manifests of the version the demo predicted with (the one it trained) lie."""
    version = store.read_json(f"manifests/trained_model/{model}.json")["version"]
    return f"manifests/predictions/{model}/{version}"


def _prediction_tiles(store, model: str, region: str, date: str) -> dict[str, np.ndarray]:
    (key,) = store.list(f"{_predictions(store, model)}/region={region}/date={date}")  # the one variant and margin made
    manifest = store.read_json(key)
    with store.env():
        return {t["key"]: read_raster(store.path(t["path"]))[0] for t in manifest["tiles"]}


def compare(
    envs: dict[str, dict[str, str]], partitions: list[tuple[str, str, str]]
) -> list[tuple[str, str, int, bool]]:
    """(region, date, tiles, identical across every profile) for each (model, region, date) predicted."""
    stores = {p: _store(e) for p, e in envs.items()}
    rows = []
    for model, region, date in partitions:
        tiles = {p: _prediction_tiles(s, model, region, date) for p, s in stores.items()}
        reference = tiles["local"]
        same = all(
            t.keys() == reference.keys() and all(np.array_equal(t[k], reference[k]) for k in reference)
            for t in tiles.values()
        )
        rows.append((region, date, len(reference), same))
    return rows


def run_demo_cloud(workdir: Path, quick: bool = False) -> int:
    console = Console(width=None if Console().is_terminal else 140)
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    with (
        seaweedfs(workdir / "s3", [BUCKET, LOGS], DEMO_KEY, DEMO_SECRET) as s3,
        fake_gcs(workdir / "gcs", [BUCKET, LOGS]) as gcs_url,
        postgres_server() as pg,
    ):
        console.rule(f"local servers: S3 API {s3.endpoint_url}, GCS API {gcs_url}, PostgreSQL {pg.host}:{pg.port}")
        envs = profile_envs(workdir, s3, gcs_url, pg)
        for profile, env in envs.items():
            home = workdir / profile / "dagster_home"
            home.mkdir(parents=True, exist_ok=True)
            instance_yaml = ROOT / "dagster.yaml" if profile == "local" else ROOT / "deploy" / profile / "dagster.yaml"
            shutil.copy(instance_yaml, home / "dagster.yaml")
            console.rule(f"profile {profile}: storage {env['GEO_ASSETS_STORAGE_ROOT']}")
            cmd = [str(Path(sys.executable).parent / "geo-assets"), "demo", *(["--quick"] if quick else [])]
            if subprocess.run(cmd, env={**os.environ, **env, "DAGSTER_HOME": str(home)}).returncode:
                console.print(f"[red]the demo failed on profile {profile}[/red]")
                return 1
        partitions = [(m, r, d) for m, r in PREDICT for d in _dates(envs["local"], m, r)]
        rows = compare(envs, partitions)
        table = Table(title="Predictions on local, aws (S3 API) and gcp (GCS API)")
        for col in ("region", "date", "tiles", "pixel for pixel"):
            table.add_column(col)
        for region, date, n, same in rows:
            table.add_row(region, date, str(n), "identical" if same else "[red]DIFFERENT[/red]")
        console.print(table)
        console.print("stopping the local servers")
    return 0 if all(r[3] for r in rows) else 1


def _dates(env: dict[str, str], model: str, region: str) -> list[str]:
    store = _store(env)
    prefix = f"{_predictions(store, model)}/region={region}"
    # .../date=D/<variant>/margin-<N>px.json: the date is the folder, whatever variant and margin lie under it
    return sorted({k.split("/date=", 1)[1].split("/", 1)[0] for k in store.list(prefix)})


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m devtools.demo_cloud", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer epochs and dates (for tests)")
    p.add_argument("--workdir", default=".demo-cloud", help="servers' data, Dagster homes (default: .demo-cloud)")
    args = p.parse_args(argv)
    return run_demo_cloud(Path(args.workdir).resolve(), quick=args.quick)


if __name__ == "__main__":
    sys.exit(main())
