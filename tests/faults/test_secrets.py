"""Planted secrets never leave the environment they were given in. A deployment (code server, webserver,
daemon) on PostgreSQL, with the `aws` profile's store on an S3 server, gets a database password and an S3
secret key; `geo-assets launch --wait` runs imagery_tiles to success (the key really signed its requests),
then again with the store answering every write 503 until the step fails. Neither secret appears in
anything a user or operator reads: the CLI's output, every run's event log (messages, metadata, errors),
the run config and tags the UI shows (over GraphQL), the compute logs and the rest of the Dagster home, the
services' logs, or any row of the database."""

from __future__ import annotations

import re
import subprocess
import uuid
from pathlib import Path

import dagster as dg
import pytest
from fault_world import ACCESS_KEY, BUCKET, REGION_S3, SECRET
from reliability import record

from devtools.dagster_dev import BIN, ROOT, graphql
from devtools.postgres import postgres_server
from tests.ui.host_stack import DATE, REGION, host_stack

pytestmark = pytest.mark.slow  # a deployment on PostgreSQL and two runs: a minute or two

MEASURES = [
    "geo_assets/geo/store.py",
    "resources/storage.py",
    "resources/profiles.py",
    "geo_assets/cli/graphql.py",
    "geo_assets/cli/commands.py",
    "deploy/compose/dagster.yaml",
    "tests/faults/test_secrets.py",
]
RUN = "query($id: ID!) { runOrError(runId: $id) { ... on Run { runConfigYaml tags { key value } } } }"


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _rows(pg) -> dict[str, str]:
    """Every row of every table of the instance's database, as text."""
    conn = pg.connect()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            tables = [t for (t,) in cur.fetchall()]
            rows = {}
            for table in tables:
                cur.execute(f'SELECT t::text FROM "{table}" t')
                rows[table] = "\n".join(r for (r,) in cur.fetchall())
            return rows
    finally:
        conn.close()


def test_planted_secrets_appear_in_no_log_config_metadata_error_or_row(s3_server, s3_proxy, tmp_path, monkeypatch):
    prefix = f"t-{uuid.uuid4().hex[:12]}"
    store_env = {
        "GEO_ASSETS_PROFILE": "aws",
        "GEO_ASSETS_STORAGE_ROOT": f"s3://{BUCKET}/{prefix}",
        "AWS_ENDPOINT_URL_S3": s3_proxy.url,
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_REGION": REGION_S3,
    }
    with postgres_server() as pg, host_stack(tmp_path, pg, extra_env=store_env) as stack:
        secrets = {"S3 secret key": SECRET, "database password": pg.password}
        for name in ("DAGSTER_HOME", *pg.env()):  # what the instance yaml reads, for this process's instance
            monkeypatch.setenv(name, stack.env[name])

        def launch() -> subprocess.CompletedProcess:
            return subprocess.run(
                [BIN / "geo-assets", "launch", "--url", stack.graphql, "--region", REGION, "--date", DATE]
                + ["--select", "imagery_tiles", "--wait"],
                cwd=ROOT,
                env=stack.env,
                capture_output=True,
                text=True,
                timeout=600,
            )

        ok = launch()
        assert ok.returncode == 0, ok.stdout[-3000:] + ok.stderr[-3000:] + stack.logs()
        s3_proxy.inject("503", methods=("PUT",))  # every write: the CLI still reads the catalogue, the step fails
        failed = launch()
        s3_proxy.heal()
        assert failed.returncode == 1, failed.stdout[-3000:] + failed.stderr[-3000:]
        # The CLI shows the step's own error, not Dagster's wrapper of it.
        assert "S3 store: " in failed.stdout and "failed after 5 attempts" in failed.stdout, failed.stdout[-3000:]
        assert "Error occurred while executing op" not in failed.stdout, failed.stdout[-3000:]
        run_ids = re.findall(r"launched run (\S+) ", ok.stdout + failed.stdout)
        assert len(run_ids) == 2

        seen: dict[str, str] = {
            "CLI output": ok.stdout + ok.stderr + failed.stdout + failed.stderr,
        }
        with dg.DagsterInstance.from_config(stack.env["DAGSTER_HOME"]) as instance:
            runs = instance.get_runs()
            assert {r.run_id for r in runs} >= set(run_ids)
            for run in runs:
                seen[f"event log of run {run.run_id}"] = "\n".join(str(e) for e in instance.all_logs(run.run_id))
                shown = graphql(stack.graphql, RUN, {"id": run.run_id})["runOrError"]
                seen[f"run config and tags of run {run.run_id} (UI)"] = str(shown)
        events = sum(len(v.splitlines()) for k, v in seen.items() if k.startswith("event log"))
        files = _files(Path(stack.env["DAGSTER_HOME"])) | {
            str(p): p.read_bytes() for p in tmp_path.glob("*.log")
        }  # compute logs, the instance's files; the services' logs
        rows = _rows(pg)

    found = []
    for what, secret in secrets.items():
        found += [f"{what} in {where}" for where, text in seen.items() if secret in text]
        found += [f"{what} in {path}" for path, data in files.items() if secret.encode() in data]
        found += [f"{what} in table {table}" for table, text in rows.items() if secret in text]
    assert not found, found
    assert any("compute_logs" in p or p.endswith((".out", ".err")) for p in files), sorted(files)[:20]

    record(
        "secrets-planted",
        "Planted secrets: a database password and an S3 secret key",
        "tests/faults/test_secrets.py",
        MEASURES,
        injected=(
            "a deployment on PostgreSQL (password given in DAGSTER_PG_PASSWORD) with the aws profile's store on "
            "SeaweedFS (secret key in AWS_SECRET_ACCESS_KEY); `geo-assets launch --wait` of imagery_tiles, once to "
            "success and once with the store answering every write 503 until the step failed."
        ),
        observed={
            "runs": f"{len(runs)}: one succeeded, one failed with the store's error",
            "searched": (
                f"the CLI's output, {len(runs)} runs' event logs ({events} lines) and their run config and tags as "
                f"the UI gets them, {len(files)} files (the Dagster home with its compute logs, the services' "
                f"logs), {sum(len(t.splitlines()) for t in rows.values())} rows of {len(rows)} database tables"
            ),
            "secrets found": "none",
        },
    )
