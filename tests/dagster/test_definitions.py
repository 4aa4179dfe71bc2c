"""The code location loads, and its asset graph, partitions, checks and jobs are what users rely on."""

import dagster as dg
import pytest

from geo_assets.definitions import defs

AK = dg.AssetKey


def test_asset_graph_edges():
    graph = defs.resolve_asset_graph()
    assert {k.to_user_string() for k in graph.get_all_asset_keys()} == {
        "imagery_tiles", "labels", "trained_model", "model_evaluation", "predictions", "region_report",
    }
    parents = {k.to_user_string(): {p.to_user_string() for p in graph.get(k).parent_keys} for k in graph.get_all_asset_keys()}
    assert parents == {
        "imagery_tiles": set(),
        "labels": set(),
        "trained_model": {"imagery_tiles", "labels"},
        "model_evaluation": {"trained_model"},
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
    for key in ("trained_model", "model_evaluation"):
        assert graph.get(AK(key)).partitions_def == dg.DynamicPartitionsDefinition(name="models")


def test_quality_gate_is_a_blocking_check_on_model_evaluation():
    graph = defs.resolve_asset_graph()
    (check,) = graph.get_check_keys_for_assets({AK("model_evaluation")})
    assert check.name == "quality_gate"
    assert graph.get_check_spec(check).blocking


def test_jobs_and_resources():
    for job, assets in {
        "imagery_job": {"imagery_tiles"}, "labels_job": {"labels"},
        "training_job": {"trained_model", "model_evaluation"}, "prediction_job": {"predictions", "region_report"},
    }.items():
        resolved = defs.resolve_job_def(job)
        assert {k.to_user_string() for k in resolved.asset_layer.executable_asset_keys} == assets
    assert set(defs.resources) >= {"storage", "compute", "io_manager"}


def test_unknown_profile_is_refused(monkeypatch):
    from resources.profiles import resource_defs

    monkeypatch.setenv("GEO_ASSETS_PROFILE", "azure")
    with pytest.raises(ValueError, match="unknown profile GEO_ASSETS_PROFILE=.azure.; accepted: local, aws, gcp"):
        resource_defs()
