"""The code location loads, and its asset graph, partitions, checks and jobs are what users rely on."""

import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
import yaml

from geo_assets.definitions import defs

AK = dg.AssetKey


def test_asset_graph_edges():
    graph = defs.resolve_asset_graph()
    assert {k.to_user_string() for k in graph.get_all_asset_keys()} == {
        "imagery_tiles",
        "labels",
        "training_set",
        "evaluation_set",
        "trained_model",
        "model_evaluation",
        "predictions",
        "region_report",
    }
    parents = {
        k.to_user_string(): {p.to_user_string() for p in graph.get(k).parent_keys} for k in graph.get_all_asset_keys()
    }
    assert parents == {
        "imagery_tiles": set(),
        "labels": set(),
        "training_set": {"imagery_tiles", "labels"},
        "evaluation_set": {"imagery_tiles", "labels"},
        "trained_model": {"training_set"},
        "model_evaluation": {"trained_model", "evaluation_set"},
        "predictions": {"imagery_tiles", "model_evaluation"},
        "region_report": {"predictions", "imagery_tiles"},
    }


def test_partitions():
    graph = defs.resolve_asset_graph()
    region_date = graph.get(AK("imagery_tiles")).partitions_def
    assert isinstance(region_date, dg.MultiPartitionsDefinition)
    dims = {d.name: d.partitions_def for d in region_date.partitions_defs}
    assert dims["region"] == dg.DynamicPartitionsDefinition(name="regions")
    assert isinstance(dims["date"], dg.DailyPartitionsDefinition)
    for key in ("predictions", "region_report"):
        assert graph.get(AK(key)).partitions_def == region_date
    assert graph.get(AK("labels")).partitions_def == dg.DynamicPartitionsDefinition(name="regions")
    for key in ("training_set", "evaluation_set", "trained_model", "model_evaluation"):
        assert graph.get(AK(key)).partitions_def == dg.DynamicPartitionsDefinition(name="models")


def test_quality_gate_is_a_blocking_check_on_model_evaluation():
    graph = defs.resolve_asset_graph()
    (check,) = graph.get_check_keys_for_assets({AK("model_evaluation")})
    assert check.name == "quality_gate"
    assert graph.get_check_spec(check).blocking


def test_jobs_and_resources():
    for job, assets in {
        "imagery_job": {"imagery_tiles"},
        "labels_job": {"labels"},
        "training_job": {"training_set", "evaluation_set", "trained_model", "model_evaluation"},
        "prediction_job": {"predictions", "region_report"},
    }.items():
        resolved = defs.resolve_job_def(job)
        assert {k.to_user_string() for k in resolved.asset_layer.executable_asset_keys} == assets
    assert set(defs.resources) >= {"storage", "compute", "io_manager", "gate"}


def test_every_asset_has_a_code_version():
    graph = defs.resolve_asset_graph()
    assert all(graph.get(k).code_version for k in graph.get_all_asset_keys())


def test_outputs_of_a_model_version_are_keyed_by_it():
    from resources.storage import KEYED_BY_MODEL_VERSION

    graph = defs.resolve_asset_graph()
    keyed = {
        k.to_user_string() for k in graph.get_all_asset_keys() if graph.get(k).metadata.get(KEYED_BY_MODEL_VERSION)
    }
    assert keyed == {"predictions", "region_report"}


def test_gate_threshold_is_a_deployment_setting(monkeypatch):
    from resources.profiles import resource_defs

    assert resource_defs()["gate"].min_miou == 0.9
    monkeypatch.setenv("GEO_ASSETS_MIN_MIOU", "0.75")
    assert resource_defs()["gate"].min_miou == 0.75
    for bad in ("1.5", "nan", "inf", "high"):
        monkeypatch.setenv("GEO_ASSETS_MIN_MIOU", bad)
        with pytest.raises(ValueError, match=f"GEO_ASSETS_MIN_MIOU='{bad}': must be a number from 0 to 1"):
            resource_defs()


def test_instance_queues_one_run_per_partition_and_retries_infrastructure_failures_only():
    config = yaml.safe_load((Path(__file__).parents[2] / "dagster.yaml").read_text())
    with dg.instance_for_test(
        overrides={k: config[k] for k in ("run_coordinator", "concurrency", "run_retries")}
    ) as instance:
        limits = instance.get_concurrency_config().run_queue_config.tag_concurrency_limits
        assert limits == [{"key": "dagster/partition", "limit": 1, "value": {"applyLimitPerUniqueValue": True}}]
        assert instance.run_retries_enabled and instance.run_retries_max_retries == 1
        assert instance.run_retries_retry_on_asset_or_op_failure is False


@pytest.mark.parametrize("retry_asset_failures, will_retry", [(False, "false"), (True, "true")])
def test_a_failed_step_is_retried_only_if_asset_failures_are(retry_asset_failures, will_retry):
    """The instance decides at failure time whether the daemon will retry; ours says no for step failures."""
    config = yaml.safe_load((Path(__file__).parents[2] / "dagster.yaml").read_text())["run_retries"]

    @dg.op
    def failing_gate() -> None:
        raise ValueError("mIoU under the gate")

    @dg.job
    def gate_job():
        failing_gate()

    overrides = {"run_retries": {**config, "retry_on_asset_or_op_failure": retry_asset_failures}}
    with dg.instance_for_test(overrides=overrides) as instance:
        run = gate_job.execute_in_process(instance=instance, raise_on_error=False)
        assert not run.success
        assert instance.get_run_by_id(run.run_id).tags["dagster/will_retry"] == will_retry


def test_unknown_profile_is_refused(monkeypatch):
    from resources.profiles import resource_defs

    monkeypatch.setenv("GEO_ASSETS_PROFILE", "azure")
    with pytest.raises(ValueError, match="unknown GEO_ASSETS_PROFILE=.azure.; accepted: local, aws, gcp"):
        resource_defs()


def test_the_code_location_loads_without_torch():
    # Every process that loads the code location (webserver, daemon, each run and step, the CLI) would
    # pay torch's import, about a second; only the steps that train or predict import it.
    probe = "import sys, geo_assets.definitions; print(sorted(m for m in ('torch', 'onnxruntime') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]", out.stdout
