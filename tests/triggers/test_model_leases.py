"""One writer per model partition, through real runs: a second `dagster asset materialize` of a model's
training (which bypasses the run queue) waits for the first and fails naming it; a training or an
evaluation step whose run was marked failed while it was frozen publishes nothing, neither the records
the registry reads (a version's model.json, an evaluation) nor the manifest.

A writer is held by stopping its processes (SIGSTOP, as a preempted machine would): a training once its
weights are exported and its record not yet stored, an evaluation once its step has started. What the
tests judge needs no knowledge of the lease: each training has its own seed, so its own version id, and
the store and the materialisation events tell what each run wrote and published.
"""

import subprocess
import time

import dagster as dg
import psutil
import pytest
from paused_runs import (  # tests/triggers is on sys.path
    kill,
    materialize,
    pause_when,
    published,
    resume,
    run_of,
    step_failures,
)

from geo_assets.assets.models import evaluation_set, trained_model, training_set
from geo_assets.cli.commands import register
from geo_assets.ml import registry
from tests.tiny_world import TRAIN  # the tiny world's training settings

MODEL = "lease-unet"  # a model of its own: the world's landcover-unet serves the other trigger tests


@pytest.fixture
def instance(world, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", world.env["DAGSTER_HOME"])  # dagster.yaml reads it
    with dg.DagsterInstance.from_config(world.env["DAGSTER_HOME"]) as served:
        yield served


@pytest.fixture
def model(world, instance) -> str:
    """MODEL's training and evaluation sets (tiny-field, tiny-holdout) and a first version, in the world's instance."""
    if not world.store.exists(f"manifests/trained_model/{MODEL}.json"):
        register(instance, models=[MODEL])
        ops = {
            # The world's date only: other tests of the session cut these regions on other dates and sizes.
            "training_set": {"config": {"regions": ["tiny-field"], "dates": ["2024-06-01"]}},
            "evaluation_set": {"config": {"regions": ["tiny-holdout"], "dates": ["2024-06-01"]}},
            "trained_model": {"config": TRAIN},
        }
        result = dg.materialize(
            [training_set, evaluation_set, trained_model],
            partition_key=MODEL,
            instance=instance,
            resources=world.resources,
            run_config={"ops": ops},
            raise_on_error=False,
        )
        assert result.success, [e.message for e in result.all_events if e.is_failure]
    return MODEL


def _versions(world) -> set[str]:
    """Versions with exported weights (model.pt2), recorded or not."""
    return {k.split("/")[2] for k in world.store.list(f"models/{MODEL}") if k.endswith(f"/{registry.WEIGHTS_FILE}")}


def _recorded(world, version: str) -> bool:
    return world.store.exists(f"{registry.model_prefix(MODEL, version)}/{registry.MODEL_FILE}")


def _train(world, seed: int, log, env: dict | None = None) -> subprocess.Popen:
    return materialize(world, "trained_model", MODEL, {"trained_model": {"config": {**TRAIN, "seed": seed}}}, log, env)


def _pause_before_record(world, instance, proc, log, before_runs: set[str]) -> tuple[str, list[psutil.Process]]:
    """Stop a training at its last epoch's log line: its exports, then its files and its record (model.json)
    under the version's prefix, come after. Returns the version the step said it trains."""
    last = f"epoch {TRAIN['epochs']}/{TRAIN['epochs']}:"
    messages: list[str] = []

    def trained() -> bool:
        time.sleep(0.02)  # the instance's database, read this often, stays free for the run's writes
        runs = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/partition": MODEL}))
        messages[:] = [
            e.user_message or "" for r in runs if r.run_id not in before_runs for e in instance.all_logs(r.run_id)
        ]
        return any(m.startswith(last) for m in messages)

    paused = pause_when(world, proc, trained, "its last epoch", log)
    (version,) = {m.rsplit(": version ", 1)[1] for m in messages if m.startswith("training ") and ": version " in m}
    return version, paused


def _orphan(instance, paused, a_run) -> None:
    """Mark the run failed while its worker and step are frozen (as run monitoring does when it loses a
    worker on a paused or partitioned machine), then let both go on to the end of the step. A worker
    killed outright takes its steps with it (test_leases.py::test_a_step_process_dies_with_its_run_worker)."""
    assert [p for p in paused[1:] if p.is_running()], "no step process under the run worker"
    instance.report_run_failed(instance.get_run_by_id(a_run.run_id), "the run worker was lost")
    resume(paused)
    gone, alive = psutil.wait_procs(paused, timeout=300)
    assert not alive, f"the orphaned step still runs: {alive}"


def test_a_second_training_of_a_model_waits_for_the_first_and_fails_naming_it(world, model, instance, tmp_path):
    before_runs, before = {r.run_id for r in instance.get_runs()}, _versions(world)
    a_log = tmp_path / "first.log"
    a = _train(world, 101, a_log)
    version, paused = _pause_before_record(world, instance, a, a_log, before_runs)
    try:
        a_run = run_of(instance, MODEL, before_runs)
        assert not _recorded(world, version), "the writer published before it could be paused"
        b_log = tmp_path / "second.log"
        b = _train(world, 102, b_log, {"GEO_ASSETS_LEASE_WAIT_S": "3"})
        b_code = b.wait(timeout=600)
        resume(paused)
        assert a.wait(timeout=300) == 0, a_log.read_text()[-3000:]
    finally:
        kill(paused)
    out = b_log.read_text()
    assert b_code != 0, f"the second training ran while the first was writing the model:\n{out[-3000:]}"
    assert f"run {a_run.run_id} is writing this partition" in out, out[-3000:]
    assert _versions(world) - before == {version}, "the second run trained while the first was writing"
    # The first run's version is whole and published.
    assert _recorded(world, version)
    assert world.store.read_json(f"manifests/trained_model/{MODEL}.json")["version"] == version
    assert a_run.run_id in published(instance, "trained_model", MODEL)


def test_an_orphaned_training_whose_run_was_marked_failed_records_no_version(world, model, instance, tmp_path):
    before_runs = {r.run_id for r in instance.get_runs()}
    manifest_before = world.store.read_json(f"manifests/trained_model/{MODEL}.json")
    a_log = tmp_path / "orphan.log"
    a = _train(world, 103, a_log)
    version, paused = _pause_before_record(world, instance, a, a_log, before_runs)
    try:
        a_run = run_of(instance, MODEL, before_runs)
        assert not _recorded(world, version), "the writer published before it could be paused"
        _orphan(instance, paused, a_run)
    finally:
        kill(paused)
    # Nothing is written under the version's prefix (so a version of the same id that another run published
    # since is never rewritten), no version exists for the registry, and the manifest is the one before.
    assert not world.store.list(registry.model_prefix(MODEL, version)), (
        f"the orphaned step of run {a_run.run_id} wrote under version {version}'s prefix"
    )
    assert not _recorded(world, version), f"the orphaned step of run {a_run.run_id} recorded version {version}"
    assert version not in {v["version"] for v in registry.list_versions(world.store, MODEL)}
    assert world.store.read_json(f"manifests/trained_model/{MODEL}.json") == manifest_before
    assert a_run.run_id not in published(instance, "trained_model", MODEL)
    (failure,) = step_failures(instance, a_run.run_id)
    assert f"run is {dg.DagsterRunStatus.FAILURE.value}, so it publishes nothing" in failure, failure


def test_an_orphaned_evaluation_whose_run_was_marked_failed_records_no_evaluation(world, model, instance, tmp_path):
    version = world.store.read_json(f"manifests/trained_model/{MODEL}.json")["version"]
    evaluations = f"{registry.model_prefix(MODEL, version)}/{registry.EVALUATIONS_DIR}"
    stored = set(world.store.list(evaluations))
    manifest = f"manifests/model_evaluation/{MODEL}.json"
    manifest_before = world.store.read_json(manifest) if world.store.exists(manifest) else None
    before_runs = {r.run_id for r in instance.get_runs()}
    a_log = tmp_path / "orphan.log"
    # A bar no evaluation of this version was recorded at: its evaluation is computed, not reused.
    a = materialize(world, "model_evaluation", MODEL, {}, a_log, {"GEO_ASSETS_MIN_MIOU": "0.0123"})

    found = []  # the run, once it exists

    def started() -> bool:
        time.sleep(0.02)  # the instance's database, read this often, stays free for the run's writes
        if not found:
            found.extend(
                r.run_id
                for r in instance.get_runs(filters=dg.RunsFilter(tags={"dagster/partition": MODEL}))
                if r.run_id not in before_runs
            )
        return any(instance.get_records_for_run(r, of_type=dg.DagsterEventType.STEP_START).records for r in found)

    paused = pause_when(world, a, started, "starting its step", a_log)
    try:
        a_run = run_of(instance, MODEL, before_runs)
        _orphan(instance, paused, a_run)
    finally:
        kill(paused)
    assert set(world.store.list(evaluations)) == stored, (
        f"the orphaned step of run {a_run.run_id} recorded an evaluation"
    )
    assert (world.store.read_json(manifest) if world.store.exists(manifest) else None) == manifest_before
    assert a_run.run_id not in published(instance, "model_evaluation", MODEL)
    (failure,) = step_failures(instance, a_run.run_id)
    assert f"run is {dg.DagsterRunStatus.FAILURE.value}, so it publishes nothing" in failure, failure
