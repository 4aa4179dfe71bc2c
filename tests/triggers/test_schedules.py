"""Schedules and declarative automation, evaluated with Dagster's own test utilities: the exact run
requests of a tick; both are off by default."""

import datetime

import dagster as dg
import pytest

from geo_assets.definitions import defs
from geo_assets.partitions import region_date_key
from geo_assets.triggers.automation import predictions_follow_serving_model
from geo_assets.triggers.schedules import REGIONS_ENV, monthly_predictions

TICK = datetime.datetime(2024, 7, 1, 6, 0, tzinfo=datetime.UTC)


@pytest.fixture
def instance():
    with dg.instance_for_test() as inst:
        yield inst


def _tick(world, instance, at: datetime.datetime = TICK):
    resources = {"storage": world.resources["storage"], "gate": world.resources["gate"]}
    return monthly_predictions(
        dg.build_schedule_context(instance=instance, scheduled_execution_time=at, resources=resources)
    )


def test_monthly_predictions_requests_each_scheduled_region_that_can_succeed(world, instance, monkeypatch):
    monkeypatch.setenv(REGIONS_ENV, "tiny-field, s2-sample, atlantis, tiny-holdout,tiny-field")
    requests = _tick(world, instance)
    # s2-sample is a sample scene of 2020-01-01 and atlantis is not catalogued: both skipped.
    assert [(r.run_key, r.partition_key) for r in requests] == [
        ("2024-07-01|tiny-field", "2024-07-01|tiny-field"),
        ("2024-07-01|tiny-holdout", "2024-07-01|tiny-holdout"),
    ]
    request = requests[0]
    assert request.run_config == {
        "ops": {
            "imagery_tiles": {"config": {"source": "synthetic", "bands": ["blue", "green", "red", "nir"]}},
            "predictions": {"config": {"model": "landcover-unet"}},
        }
    }
    assert request.tags == {
        "geo-assets/region": "tiny-field",
        "geo-assets/source": "synthetic",
        "geo-assets/model": "landcover-unet",
        "geo-assets/trigger": "monthly_predictions",
    }


def test_monthly_predictions_skips_with_the_reason(world, instance, monkeypatch):
    monkeypatch.delenv(REGIONS_ENV, raising=False)
    assert f"set {REGIONS_ENV}=" in _tick(world, instance).skip_message
    monkeypatch.setenv(REGIONS_ENV, "s2-sample,atlantis")
    assert (
        "every scheduled region was refused for 2024-07-01: s2-sample, atlantis" in _tick(world, instance).skip_message
    )


def test_the_preview_of_a_future_tick_says_what_it_will_request(world, instance, monkeypatch):
    """The UI's next-tick preview evaluates a tick dated after today: its regions are checked as on the
    day (the date aside, which is not a partition yet), and nothing is requested now."""
    monkeypatch.setenv(REGIONS_ENV, "tiny-field,atlantis")
    today = datetime.datetime.now(datetime.UTC)
    next_month = (today.replace(day=1) + datetime.timedelta(days=32)).replace(
        day=1, hour=6, minute=0, second=0, microsecond=0
    )
    day = next_month.date().isoformat()
    assert _tick(world, instance, next_month).skip_message == (
        f"preview of the tick of {day}: it will request {day}|tiny-field; refused now: atlantis "
        "(nothing is requested before that day)"
    )


def test_schedules_and_automation_are_off_by_default():
    assert monthly_predictions in defs.schedules and predictions_follow_serving_model in defs.sensors
    assert monthly_predictions.default_status == dg.DefaultScheduleStatus.STOPPED
    assert predictions_follow_serving_model.default_status == dg.DefaultSensorStatus.STOPPED


def test_predictions_follow_a_newly_evaluated_model():
    """The automation asks for exactly the partitions that have predictions, once per new evaluation."""
    predicted = [region_date_key("tiny-field", "2024-06-01"), region_date_key("tiny-holdout", "2024-06-02")]
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("regions", ["tiny-field", "tiny-holdout"])
        instance.add_dynamic_partitions("models", ["landcover-unet"])
        for key in predicted:
            instance.report_runless_asset_event(dg.AssetMaterialization("predictions", partition=key))
        instance.report_runless_asset_event(
            dg.AssetMaterialization("imagery_tiles", partition=region_date_key("tiny-field", "2024-06-03"))
        )
        selection = dg.AssetSelection.assets("predictions")
        first = dg.evaluate_automation_conditions(defs=defs, instance=instance, asset_selection=selection)
        assert first.total_requested == 0  # nothing was evaluated since the last tick

        instance.report_runless_asset_event(dg.AssetMaterialization("model_evaluation", partition="landcover-unet"))
        second = dg.evaluate_automation_conditions(
            defs=defs, instance=instance, asset_selection=selection, cursor=first.cursor
        )
        assert second.get_requested_partitions(dg.AssetKey("predictions")) == set(predicted)
        assert second.total_requested == 2

        third = dg.evaluate_automation_conditions(
            defs=defs, instance=instance, asset_selection=selection, cursor=second.cursor
        )
        assert third.total_requested == 0  # once per evaluation
