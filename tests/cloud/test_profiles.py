"""The profiles end to end: one environment variable switches the whole graph between local
files, S3 and GCS, with the same predictions pixel for pixel, and compute logs in the clouds."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


@pytest.mark.slow
@pytest.mark.timeout(2400)  # three quick demos, each training two models
def test_demo_cloud_gives_identical_predictions_on_every_profile(tmp_path):
    proc = subprocess.run(
        [
            BIN / "python",
            "-m",
            "devtools.demo_cloud",
            "--quick",
            "--workdir",
            tmp_path / "dc",
        ],  # make demo-cloud's command
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=2300,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert out.count("identical") == 3 and "DIFFERENT" not in out  # synth-holdout, s2-sample, landsat-sample
    for profile in ("local", "aws", "gcp"):
        assert f"profile {profile}: storage" in out
    assert "stopping the local servers" in out


@pytest.mark.parametrize("profile", ["aws", "gcp"])
def test_compute_logs_and_assets_land_in_the_bucket(profile, s3_server, gcs_server, postgres, bucket, prefix, tmp_path):
    from geo_assets.geo.store import make_store

    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(ROOT / "deploy" / profile / "dagster.yaml", home / "dagster.yaml")
    if profile == "aws":
        env = {
            "AWS_ENDPOINT_URL_S3": s3_server.endpoint_url,
            "AWS_ACCESS_KEY_ID": s3_server.access_key,
            "AWS_SECRET_ACCESS_KEY": s3_server.secret_key,
            "AWS_REGION": s3_server.region,
        }
        root = f"s3://{bucket}/{prefix}"

        def store(r):
            return make_store(
                r,
                endpoint_url=s3_server.endpoint_url,
                access_key_id=s3_server.access_key,
                secret_access_key=s3_server.secret_key,
                region=s3_server.region,
            )
    else:
        env = {"STORAGE_EMULATOR_HOST": gcs_server, "GOOGLE_CLOUD_PROJECT": "test-project"}
        root = f"gs://{bucket}/{prefix}"

        def store(r):
            return make_store(r, endpoint_url=gcs_server, anonymous=True)

    env = {
        **os.environ,
        **env,
        **postgres.create_database().env(),
        "GEO_ASSETS_PROFILE": profile,
        "GEO_ASSETS_STORAGE_ROOT": root,
        "GEO_ASSETS_LOG_BUCKET": bucket,
        "DAGSTER_HOME": str(home),
    }
    subprocess.run([BIN / "geo-assets", "init"], cwd=ROOT, env=env, check=True, capture_output=True, timeout=120)
    proc = subprocess.run(
        [
            BIN / "dagster",
            "asset",
            "materialize",
            "-m",
            "geo_assets.definitions",
            "--select",
            "labels",
            "--partition",
            "synth-holdout",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert store(root).exists("manifests/labels/synth-holdout.json")
    assert len(store(root).list("labels/synth-holdout")) == 16
    logs = store(root.removesuffix("/" + prefix)).list("dagster-compute-logs")
    assert any(k.endswith((".err", ".out")) for k in logs), logs


def test_cloud_profile_without_a_root_is_refused():
    env = {**os.environ, "GEO_ASSETS_PROFILE": "aws", "GEO_ASSETS_STORAGE_ROOT": "file:///tmp/x"}
    proc = subprocess.run(
        [BIN / "python", "-c", "import geo_assets.definitions"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0
    assert "profile aws needs GEO_ASSETS_STORAGE_ROOT=s3://bucket/prefix (got 'file:///tmp/x')" in proc.stderr
