"""`geo-assets model add`: a model name registered with its architecture, bands and its training and
evaluation sets, which its runs then follow; what the command refuses, each with one clear message."""

import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from geo_assets.assets.imagery import imagery_tiles
from geo_assets.assets.labels import labels
from geo_assets.assets.models import evaluation_set, model_evaluation, trained_model, training_set
from geo_assets.cli.commands import main
from geo_assets.ml import registry
from geo_assets.partitions import MODELS, REGIONS, region_date_key
from resources.gate import ModelGate

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
DATE = "2024-06-01"
TILES64 = {"config": {"tile_size": 64}}  # imagery of blue, green, red, nir (the source's default bands)
ADD = [
    "model",
    "add",
    "my-model",
    "--architecture",
    "fcn",
    "--hyperparameter",
    "hidden_channels=8",
    "--bands",
    "red",
    "green",
    "blue",
    "--training-regions",
    "tiny-field",
    "--evaluation-regions",
    "tiny-holdout",
]
# Training that fits the tiny tiles; architecture and hyperparameters are left to the definition.
TRAIN = {"epochs": 1, "chips_per_epoch": 16, "chip_size": 64, "batch_size": 8, "learning_rate": 0.01}


@pytest.fixture
def world(tmp_path, store, resources, monkeypatch):
    """A Dagster home and the store with tiny-field and tiny-holdout cut (imagery and labels), as the CLI sees them."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text((ROOT / "dagster.yaml").read_text())
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("GEO_ASSETS_STORAGE_ROOT", store.root)
    resources = {**resources, "gate": ModelGate(min_miou=0.0)}
    with dg.DagsterInstance.get() as instance:
        instance.add_dynamic_partitions(REGIONS, ["tiny-field", "tiny-holdout"])
        for region in ("tiny-field", "tiny-holdout"):
            key = region_date_key(region, DATE)
            ops = {"ops": {"imagery_tiles": TILES64}}
            assert dg.materialize(
                [imagery_tiles], partition_key=key, resources=resources, instance=instance, run_config=ops
            ).success
            ops = {"ops": {"labels": TILES64}}
            assert dg.materialize(
                [labels], partition_key=region, resources=resources, instance=instance, run_config=ops
            ).success
        yield instance, store, resources  # fmt: skip


def _cli(*args: str) -> subprocess.CompletedProcess:
    """The geo-assets command, in a fresh process, in this test's environment (its Dagster home and store)."""
    return subprocess.run(
        [BIN / "geo-assets", *args], cwd=ROOT, env=dict(os.environ), capture_output=True, text=True, timeout=300
    )


def _runs(instance, resources, ops: dict, selection: list) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [training_set, evaluation_set, trained_model, model_evaluation],
        selection=selection,
        partition_key="my-model",
        resources=resources,
        instance=instance,
        run_config={"ops": ops},
        raise_on_error=False,
    )


def test_a_model_added_trains_and_is_judged_as_defined(world):
    instance, store, resources = world
    added = _cli(*ADD)
    assert added.returncode == 0, added.stderr
    assert "added model my-model: fcn on red, green, blue; trains on 1 acquisition(s) of tiny-field" in added.stdout
    assert instance.has_dynamic_partition(MODELS, "my-model")
    spec = registry.definition(store, "my-model")
    assert (spec["architecture"], spec["hyperparameters"], spec["bands"]) == (
        "fcn",
        {"hidden_channels": 8},
        ["red", "green", "blue"],
    )
    assert spec["evaluation_set"]["acquisitions"] == [f"tiny-holdout/{DATE}"]
    assert registry.registered_set(store, "my-model")["acquisitions"] == [["tiny-holdout", DATE]]
    listed = _cli("model", "list", "my-model")
    assert listed.returncode == 0, listed.stderr
    assert (
        "defined: fcn (hidden_channels=8), bands red, green, blue; training on tiny-field; evaluation on tiny-holdout"
        in listed.stdout
    )

    moved = _cli("model", "evaluation-set", "my-model", "--regions", "tiny-holdout")
    assert moved.returncode == 2 and "model my-model was added with its evaluation set" in moved.stderr

    # Config left out: the runs take the definition's sets, bands, architecture and hyperparameters.
    result = _runs(
        instance,
        resources,
        {"trained_model": {"config": TRAIN}},
        ["training_set", "evaluation_set", "trained_model", "model_evaluation"],
    )
    assert result.success
    assert result.output_for_node("training_set")["regions"] == ["tiny-field"]
    record = result.output_for_node("trained_model")
    assert (record["config"]["architecture"], record["config"]["hyperparameters"]) == ("fcn", {"hidden_channels": 8})
    assert record["bands"] == ["red", "green", "blue"]  # 3 of the 4 bands cut, in the order defined
    judged = result.asset_materializations_for_node("evaluation_set")[0].metadata
    assert judged["is_registered_set"].value is True

    # Config that names other sets or another architecture is refused, naming the definition.
    for ops, step, message in [
        (
            {"training_set": {"config": {"regions": ["tiny-holdout"]}}},
            "training_set",
            "model my-model was added with its training_set: regions tiny-field",
        ),
        (
            {"trained_model": {"config": {**TRAIN, "architecture": "fcn", "hyperparameters": {"hidden_channels": 16}}}},
            "trained_model",
            "model my-model was added as a fcn with hyperparameters {'hidden_channels': 8} (models/my-model/"
            "definition.json); this run's config asks for a fcn with {'hidden_channels': 16}",
        ),
    ]:
        refused = _runs(instance, resources, ops, [step] if step == "training_set" else ["trained_model"])
        assert not refused.success
        (failure,) = [e for e in refused.all_events if e.is_step_failure]
        assert message in str(failure.step_failure_data.error)
    # fmt: skip


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"--architecture": "resnet"}, "unknown architecture 'resnet'; accepted: unet, fcn"),
        ({"--bands": "red nir swir1"}, f"the imagery of tiny-field/{DATE} "),
        ({"--bands": "red nir swir1"}, "it lacks swir1; cut imagery_tiles with them first"),
        ({"--bands": "red redd"}, "unknown band 'redd'; accepted: blue, green, red, nir"),
        ({"--bands": "red red"}, "--bands names a band twice: red red"),
        ({"--hyperparameter": "hidden_channels=5000"}, "hyperparameter hidden_channels of 'fcn' must be a whole number from 1 to 1024, got 5000"),
        ({"--hyperparameter": "hidden_channels"}, "--hyperparameter 'hidden_channels': expected NAME=NUMBER"),
        ({"--evaluation-regions": "tiny-field"}, "region tiny-field is in both sets"),
        ({"--evaluation-regions": "nowhere"}, "nowhere"),
        ({"name": "My Model"}, "My Model"),
    ],
)  # fmt: skip
def test_model_add_refuses_with_one_clear_message(world, capsys, change, message):
    args = list(ADD)
    for option, value in change.items():
        if option == "name":
            args[2] = value
            continue
        at = args.index(option) + 1
        end = next((i for i in range(at, len(args)) if args[i].startswith("--")), len(args))
        args[at:end] = value.split()
    assert main(args) == 2
    error = capsys.readouterr().err
    assert error.startswith("geo-assets: error: ") and message in error, error
    assert error.count("\n") == 1, error  # one line, no traceback
    assert registry.definition(world[1], "my-model") is None  # nothing was written


def test_a_name_taken_is_refused(world):
    instance, store, _ = world
    assert _cli(*ADD).returncode == 0
    again = _cli(*ADD)
    assert again.returncode == 2
    assert "geo-assets: error: model name 'my-model' is taken: " in again.stderr
    instance.add_dynamic_partitions(MODELS, ["other-model"])  # a partition with no stored objects yet
    other = _cli(*[("other-model" if a == "my-model" else a) for a in ADD])
    assert other.returncode == 2 and "model name 'other-model' is taken: it is a model partition" in other.stderr
    assert json.loads(store.read_bytes("models/my-model/definition.json"))["bands"] == ["red", "green", "blue"]
