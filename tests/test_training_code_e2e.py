"""A model version's id covers the training code: a copy of the package with an edited loss names a new
version for the same request, and a run launched with it on an existing store trains anew."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
from local_world import local_world

from geo_assets.assets.imagery import imagery_tiles
from geo_assets.assets.labels import labels
from geo_assets.cli.commands import register
from geo_assets.geo.regions import Region
from geo_assets.ml import training_code
from geo_assets.partitions import region_date_key

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
FIELD = Region(
    "code-field", (400000.0, 5120000.0, 401280.0, 5121280.0), "EPSG:32631", "synthetic", "synthetic", ("2024-06-01",)
)
LOSS = "nn.CrossEntropyLoss(ignore_index=IGNORE, "
TRAIN = {
    "architecture": "fcn",
    "epochs": 1,
    "chips_per_epoch": 8,
    "chip_size": 64,
    "batch_size": 8,
    "hyperparameters": {"hidden_channels": 8},
}
VERSION_OF = """
import json, sys
from geo_assets.ml import training_code
from geo_assets.ml.versions import TrainingRequest, version_of
request = TrainingRequest.from_json(json.loads(sys.argv[1]))
print(json.dumps({"version": version_of(request, {"device": "cpu", "torch": "2.13.0+cpu"}),
                  "code": training_code.digest(), "from": training_code.__file__}))
"""


def _copy(tmp_path: Path, name: str, edit=None) -> Path:
    """The code location's packages copied to tmp_path/name, with `edit(source of ml/train.py)` applied."""
    root = tmp_path / name
    for package in ("geo_assets", "resources"):
        shutil.copytree(ROOT / package, root / package, ignore=shutil.ignore_patterns("__pycache__"))
    if edit is not None:
        train = root / "geo_assets/ml/train.py"
        before = train.read_text()
        after = edit(before)
        assert after != before
        train.write_text(after)
    return root


def _env(code: Path, **extra) -> dict:
    return {**os.environ, "PYTHONPATH": str(code), **extra}


def _version_of(code: Path, request: dict) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", VERSION_OF, json.dumps(request)],
        cwd=code,
        env=_env(code),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    answer = json.loads(proc.stdout)
    assert Path(answer["from"]).is_relative_to(code)  # the copy ran, not the checkout
    return answer


REQUEST = {
    "model": "code-model",
    "settings": {**TRAIN, "device": "cpu"},
    "training_set": {
        "items": [{"region": "code-field", "date": "2024-06-01", "imagery_version": "a", "labels_version": "b"}]
    },
}


def test_an_edited_loss_names_a_new_version_and_a_comment_does_not(tmp_path):
    same = _version_of(_copy(tmp_path, "same"), REQUEST)
    assert same["code"] == training_code.digest()
    edited = _version_of(_copy(tmp_path, "loss", lambda s: s.replace(LOSS, LOSS + "label_smoothing=0.1, ")), REQUEST)
    assert edited["code"] != same["code"] and edited["version"] != same["version"]
    # Comments and docstrings do not make the weights: the id stays.
    noted = _version_of(
        _copy(tmp_path, "comment", lambda s: s.replace("\ndef _train(", "\n# a note\ndef _train(")), REQUEST
    )
    assert noted == {**same, "from": noted["from"]}
    # Nor do type hints of arguments and returns.
    hinted = _version_of(
        _copy(
            tmp_path,
            "hint",
            lambda s: s.replace(
                "def _train(chips: ChipBatches, in_channels,", "def _train(chips: ChipBatches, in_channels: int,"
            ),
        ),
        REQUEST,
    )
    assert hinted == {**same, "from": hinted["from"]}


@pytest.fixture
def world(tmp_path, monkeypatch):
    """A DAGSTER_HOME and a store with a tiny region's imagery and labels."""
    home, store, resources = local_world(tmp_path, monkeypatch, [FIELD])
    tiles = {"config": {"tile_size": 64}}
    with dg.DagsterInstance.from_config(str(home)) as instance:
        register(instance, regions=[FIELD.name], models=["code-model"])
        assert dg.materialize(
            [imagery_tiles],
            partition_key=region_date_key(FIELD.name, "2024-06-01"),
            instance=instance,
            resources=resources,
            run_config={"ops": {"imagery_tiles": tiles}},
        ).success
        assert dg.materialize(
            [labels],
            partition_key=FIELD.name,
            instance=instance,
            resources=resources,
            run_config={"ops": {"labels": tiles}},
        ).success
    return {"DAGSTER_HOME": str(home), "GEO_ASSETS_STORAGE_ROOT": store.root}, store


def _train(code: Path, env: dict) -> str:
    ops = {"training_set": {"config": {"regions": [FIELD.name]}}, "trained_model": {"config": TRAIN}}
    proc = subprocess.run(
        [
            BIN / "dagster",
            "asset",
            "materialize",
            "-m",
            "geo_assets.definitions",
            "-d",
            str(code),
            "--select",
            "training_set,trained_model",
            "--partition",
            "code-model",
            "--config-json",
            json.dumps({"ops": ops}),
        ],
        cwd=code,
        env=_env(code, **env),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    return proc.stdout + proc.stderr


def test_a_run_after_the_training_code_changed_trains_anew(tmp_path, world):
    env, store = world
    before = _train(_copy(tmp_path, "before"), env)
    assert "reusing it unchanged" not in before
    edited = _copy(tmp_path, "edited", lambda s: s.replace(LOSS, LOSS + "label_smoothing=0.1, "))
    after = _train(edited, env)
    assert "reusing it unchanged" not in after and re.search(r"training fcn on \d+ tiles", after)
    records = [store.read_json(k) for k in store.list("models/code-model") if k.endswith("/model.json")]
    assert len(records) == 2 and records[0]["version"] != records[1]["version"]
    digests = {r["training_code"]["digest"] for r in records}
    assert digests == {training_code.digest(), _version_of(edited, REQUEST)["code"]}
    assert all(r["training_code"]["modules"] == list(training_code.MODULES) for r in records)
    # The edited code again: its version exists, so it is reused as it was stored.
    assert "reusing it unchanged" in _train(edited, env)
    assert len([k for k in store.list("models/code-model") if k.endswith("/model.json")]) == 2


def test_the_same_acquisitions_in_another_order_name_another_version():
    # The set's order decides which tile each chip draw picks (ml.data.ChipSampler), so it decides the
    # weights: a set listed [b, a] may not reuse the version trained on [a, b].
    from geo_assets.ml.versions import TrainingRequest, version_of

    items = [{"region": r, "date": "2024-06-01", "imagery_version": f"i-{r}", "labels_version": f"l-{r}"} for r in "ab"]
    runtime = {"device": "cpu", "torch": "2.13.0"}
    forward = version_of(TrainingRequest("m", {"epochs": 1}, {"items": items}), runtime)
    backward = version_of(TrainingRequest("m", {"epochs": 1}, {"items": items[::-1]}), runtime)
    assert forward != backward
    assert forward == version_of(TrainingRequest("m", {"epochs": 1}, {"items": [dict(i) for i in items]}), runtime)
