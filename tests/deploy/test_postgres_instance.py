"""The deployed instances keep runs and event logs in PostgreSQL, queue runs one per partition, and
the embedded default keeps SQLite.

`dagster dev` (webserver and daemon) serves the code location on deploy/gcp/dagster.yaml, copied
verbatim, against a real PostgreSQL server and a GCS API (fake-gcs-server, for the compute logs).
Two runs launched over GraphQL on one partition both succeed, one after the other, and their runs,
events and step logs are found in PostgreSQL and the bucket, not in SQLite files.
"""

from __future__ import annotations

import os
import subprocess

import pytest

from devtools.dagster_dev import BIN, ROOT, dagster_dev, launch, wait
from devtools.emulators.gcs import fake_gcs

PARTITION = "2024-06-01|synth-holdout"
LOG_BUCKET = "geo-assets-logs"


@pytest.fixture(scope="module")
def gcs(tmp_path_factory):
    with fake_gcs(tmp_path_factory.mktemp("fake-gcs"), [LOG_BUCKET]) as endpoint_url:
        yield endpoint_url


@pytest.fixture(scope="module")
def deployed(tmp_path_factory, postgres, gcs):
    """`dagster dev` on the GCP instance yaml: PostgreSQL storage, compute logs in a GCS bucket."""
    tmp = tmp_path_factory.mktemp("pg-dev")
    home = tmp / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text((ROOT / "deploy/gcp/dagster.yaml").read_text())
    env = {
        **os.environ,
        **postgres.env(),
        "DAGSTER_HOME": str(home),
        "GEO_ASSETS_STORAGE_ROOT": (tmp / "storage").as_uri(),
        "GEO_ASSETS_LOG_BUCKET": LOG_BUCKET,
        "STORAGE_EMULATOR_HOST": gcs,
        "GOOGLE_CLOUD_PROJECT": "test-project",
    }
    env.pop("GEO_ASSETS_PROFILE", None)
    init = subprocess.run([BIN / "geo-assets", "init"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert init.returncode == 0, init.stderr[-3000:]
    log = tmp / "dev.log"
    with dagster_dev(env, log) as url:
        yield url, home, postgres, gcs, log


def _launch(url: str) -> str:
    return launch(url, "imagery_job", PARTITION, {"imagery_tiles": {"config": {"tile_size": 64}}})


def _wait(url: str, run_id: str, log) -> str:
    return wait(url, run_id)["status"]


def test_runs_on_one_partition_queue_and_persist_in_postgres(deployed):
    url, home, pg, gcs, log = deployed
    first, second = _launch(url), _launch(url)
    assert _wait(url, first, log) == "SUCCESS"
    assert _wait(url, second, log) == "SUCCESS"

    with pg.connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT run_id, status FROM runs WHERE run_id IN (%s, %s)", (first, second))
        assert dict(cur.fetchall()) == {first: "SUCCESS", second: "SUCCESS"}
        cur.execute(
            "SELECT count(*) FROM event_logs WHERE run_id = %s AND dagster_event_type = 'ASSET_MATERIALIZATION'",
            (first,),
        )
        assert cur.fetchone()[0] == 1
        # `geo-assets init` registered the regions in the same database.
        cur.execute("SELECT partition FROM dynamic_partitions WHERE partitions_def_name = 'regions'")
        assert "synth-holdout" in {r[0] for r in cur.fetchall()}
        # One run per partition key: the second started only after the first had finished.
        spans = {}
        for run_id in (first, second):
            cur.execute(
                "SELECT dagster_event_type, timestamp FROM event_logs WHERE run_id = %s "
                "AND dagster_event_type IN ('PIPELINE_START', 'PIPELINE_SUCCESS')",
                (run_id,),
            )
            spans[run_id] = dict(cur.fetchall())
        assert spans[second]["PIPELINE_START"] >= spans[first]["PIPELINE_SUCCESS"], spans

    # Nothing fell back to SQLite in DAGSTER_HOME.
    assert not [p for p in home.rglob("*.db")], sorted(home.rglob("*"))

    # Each step's stdout/stderr went to the bucket under the yaml's prefix.
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    client = storage.Client(
        project="test-project", credentials=AnonymousCredentials(), client_options={"api_endpoint": gcs}
    )
    keys = [b.name for b in client.list_blobs(LOG_BUCKET, prefix="dagster-compute-logs/")]
    assert any(first in k for k in keys), keys


def test_embedded_default_keeps_sqlite(tmp_path, monkeypatch):
    from dagster import DagsterInstance
    from dagster._core.storage.event_log import SqliteEventLogStorage
    from dagster._core.storage.runs import SqliteRunStorage

    (tmp_path / "dagster.yaml").write_text((ROOT / "dagster.yaml").read_text())
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    with DagsterInstance.from_config(str(tmp_path)) as instance:
        assert isinstance(instance.run_storage, SqliteRunStorage)
        assert isinstance(instance.event_log_storage, SqliteEventLogStorage)


@pytest.mark.parametrize("yaml_path", ["deploy/aws/dagster.yaml", "deploy/gcp/dagster.yaml", "deploy/ecs/dagster.yaml"])
def test_every_deployed_instance_uses_postgres_the_queue_and_retries(yaml_path, tmp_path, monkeypatch, fresh_db):
    """Each non-local instance yaml loads against PostgreSQL with the same queue, pools, monitoring
    and retry policy, and writes what it stores into that database."""
    from dagster import DagsterInstance
    from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage

    (tmp_path / "dagster.yaml").write_text((ROOT / yaml_path).read_text())
    for key, value in {
        **fresh_db.env(),
        "DAGSTER_HOME": str(tmp_path),
        "GEO_ASSETS_LOG_BUCKET": "logs",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "STORAGE_EMULATOR_HOST": "http://127.0.0.1:9",
        "GOOGLE_CLOUD_PROJECT": "p",
        "GEO_ASSETS_RUN_TASK_ROLE_ARN": "arn:aws:iam::000000000000:role/run",
        "GEO_ASSETS_ECS_EXECUTION_ROLE_ARN": "arn:aws:iam::000000000000:role/exec",
        "GEO_ASSETS_PG_PASSWORD_SECRET_ARN": "arn:aws:secretsmanager:us-east-1:000000000000:secret:pg",
        "GEO_ASSETS_ECS_LOG_GROUP": "/geo-assets/runs",
    }.items():
        monkeypatch.setenv(key, value)
    with DagsterInstance.from_config(str(tmp_path)) as instance:
        assert isinstance(instance.run_storage, PostgresRunStorage)
        assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
        assert isinstance(instance.schedule_storage, PostgresScheduleStorage)
        # A database that does not answer fails each connection in seconds (tests/deploy/test_database_away.py).
        assert "connect_timeout=2" in instance.run_storage.postgres_url
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        concurrency = instance.get_concurrency_config()
        assert concurrency.run_queue_config.tag_concurrency_limits == [
            {"key": "dagster/partition", "limit": 1, "value": {"applyLimitPerUniqueValue": True}}
        ]
        assert concurrency.pool_config.default_pool_limit == 1
        assert instance.run_monitoring_enabled
        assert instance.run_retries_enabled and instance.run_retries_max_retries == 1
        assert instance.run_retries_retry_on_asset_or_op_failure is False
        if "ecs" in yaml_path:
            launcher = instance.run_launcher
            assert type(launcher).__name__ == "EcsRunLauncher"
            assert launcher.task_definition_dict["task_role_arn"] == "arn:aws:iam::000000000000:role/run"
            assert launcher.secrets == [
                {"name": "DAGSTER_PG_PASSWORD", "valueFrom": "arn:aws:secretsmanager:us-east-1:000000000000:secret:pg"}
            ]
        instance.add_dynamic_partitions("regions", ["yaml-check"])
    with fresh_db.connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT partition FROM dynamic_partitions")
        assert [r[0] for r in cur.fetchall()] == ["yaml-check"]
