"""The set a model is judged on is part of its registered definition, and a pin serves only while it passes.

Real runs launched with `dagster asset materialize` (the CLI process reads GEO_ASSETS_MIN_MIOU as a
deployment would) and the `geo-assets model` commands, in fresh processes, on a real store and instance."""

import contextlib
import io
import json
import os
import subprocess

import dagster as dg
import pytest

from devtools.dagster_dev import BIN, ROOT
from geo_assets import cli
from geo_assets.assets.imagery import imagery_tiles
from geo_assets.assets.labels import labels
from geo_assets.assets.models import AUTOMATION_TAGS, evaluation_set, trained_model, training_set
from geo_assets.cli.commands import register
from geo_assets.geo.regions import Region, load_catalogue, save_catalogue
from geo_assets.geo.store import Store, local_root
from geo_assets.ml import registry
from geo_assets.partitions import region_date_key
from resources.compute import LocalPoolCompute
from tests.tiny_world import TILES64, TRAIN, resources_for  # the tiny world's settings and resources

MODEL = "tiny-model"
DATE = "2024-06-01"
FIELD = Region("tiny-field", (400000.0, 5120000.0, 401280.0, 5121280.0), "EPSG:32631", "synthetic", "synthetic")
HOLDOUT = Region("tiny-holdout", (440320.0, 5120000.0, 441600.0, 5121280.0), "EPSG:32631", "synthetic", "synthetic")
OTHER = Region("tiny-other", (480000.0, 5120000.0, 481280.0, 5121280.0), "EPSG:32631", "synthetic", "synthetic")


class Deployment:
    """A store and Dagster home with tiny-model trained (not yet evaluated), driven through the command lines."""

    def __init__(self, tmp):
        self.home = tmp / "home"
        self.home.mkdir()
        (self.home / "dagster.yaml").write_text((ROOT / "dagster.yaml").read_text())
        self.store = Store(local_root(tmp / "storage"))
        self.env = {
            **os.environ,
            "DAGSTER_HOME": str(self.home),
            "GEO_ASSETS_STORAGE_ROOT": (tmp / "storage").as_uri(),
            "GEO_ASSETS_MIN_MIOU": "0",
        }

    def cli(self, *args, min_miou: str = "0") -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(BIN / args[0]), *map(str, args[1:])],
            cwd=ROOT,
            capture_output=True,
            text=True,
            env={**self.env, "GEO_ASSETS_MIN_MIOU": min_miou},
            timeout=600,
        )

    def main(self, *args, min_miou: str = "0", code: int = 0) -> str:
        """A `geo-assets` command in this process (the same code path without a process start-up); its output."""
        out = io.StringIO()
        with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            for name, value in {**self.env, "GEO_ASSETS_MIN_MIOU": min_miou}.items():
                patch.setenv(name, value)
            returned = cli.main([str(a) for a in args])
        assert returned == code, out.getvalue()
        return out.getvalue()

    def evaluate(self, regions: list[str], **extra) -> subprocess.CompletedProcess:
        ops = {"evaluation_set": {"config": {"regions": regions, **extra}}}
        return self.cli(
            "dagster",
            "asset",
            "materialize",
            "-m",
            "geo_assets.definitions",
            "--select",
            "evaluation_set,model_evaluation",
            "--partition",
            MODEL,
            "--config-json",
            json.dumps({"ops": ops}),
        )

    def predict(self, min_miou: str = "0", version: str | None = None) -> subprocess.CompletedProcess:
        config = {"model": MODEL, **({"version": version} if version else {})}
        return self.cli(
            "dagster",
            "asset",
            "materialize",
            "-m",
            "geo_assets.definitions",
            "--select",
            "predictions",
            "--partition",
            f"{DATE}|{HOLDOUT.name}",
            "--config-json",
            json.dumps({"ops": {"predictions": {"config": config}}}),
            min_miou=min_miou,
        )

    def evaluations(self, version: str) -> list[dict]:
        return next(r for r in registry.list_versions(self.store, MODEL) if r["version"] == version)["evaluations"]


@pytest.fixture
def deployment(tmp_path, monkeypatch) -> tuple[Deployment, str]:
    d = Deployment(tmp_path)
    catalogue = load_catalogue(d.store)
    for region in (FIELD, HOLDOUT, OTHER):
        catalogue.add(region)
    save_catalogue(d.store, catalogue)
    monkeypatch.setenv("DAGSTER_HOME", str(d.home))  # the instance yaml reads it
    with dg.DagsterInstance.from_config(str(d.home)) as served:
        register(served, regions=catalogue.names(), models=[MODEL])
    resources = _resources(d.store)
    with dg.instance_for_test() as instance:  # the inputs, made the quick way; what is tested runs below
        register(instance, regions=catalogue.names(), models=[MODEL])

        def run(assets, key, ops):
            result = dg.materialize(
                assets, partition_key=key, resources=resources, instance=instance, run_config={"ops": ops}
            )
            assert result.success
            return result

        for region in (FIELD, HOLDOUT, OTHER):
            run([imagery_tiles], region_date_key(region.name, DATE), {"imagery_tiles": TILES64})
            run([labels], region.name, {"labels": TILES64})
        result = run(
            [training_set, trained_model],
            MODEL,
            {"training_set": {"config": {"regions": [FIELD.name]}}, "trained_model": {"config": TRAIN}},
        )
    return d, result.output_for_node("trained_model")["version"]


def _resources(store: Store) -> dict:
    return resources_for(store, LocalPoolCompute(workers=2))


def _ok(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def _latest_metadata(home, asset: str) -> dict:
    with dg.DagsterInstance.from_config(str(home)) as instance:
        event = instance.get_latest_materialization_event(dg.AssetKey(asset))
        return {k: v.value for k, v in event.asset_materialization.metadata.items()}


def test_only_an_evaluation_on_the_registered_set_makes_a_version_serve(deployment):
    d, version = deployment
    out = d.main("model", "evaluation-set", MODEL, "--regions", HOLDOUT.name)
    registered = registry.registered_set(d.store, MODEL)
    assert registered["acquisitions"] == [[HOLDOUT.name, DATE]] and registered["revision"] == 1
    assert (
        f"registered model {MODEL} evaluation set: {registered['set_id']} revision 1, 1 acquisition(s): tiny-holdout/{DATE}"
        in out
    )
    # Bad input: one clear error, and the registered set is untouched.
    assert "unknown region 'atlantis'" in d.main("model", "evaluation-set", MODEL, "--regions", "atlantis", code=2)
    assert "2024-07-01" in d.main(
        "model", "evaluation-set", MODEL, "--regions", HOLDOUT.name, "--dates", "2024-07-01", code=2
    )
    assert registry.registered_set(d.store, MODEL) == registered

    # Judged on another set (at gate 0, where any score passes): recorded and shown, but the blocking
    # quality_gate check fails and no version serves.
    judged = d.evaluate([OTHER.name])
    out = judged.stdout + judged.stderr
    assert judged.returncode != 0, out[-3000:]
    assert "not the model's registered evaluation set" in out
    assert "on tiny-other (threshold 0.0); not the registered evaluation set, so it cannot pass" in out
    assert registry.registered_set(d.store, MODEL) == registered  # a run's selection never changes it
    (other,) = d.evaluations(version)
    assert other["passed"] and other["evaluation_set"] != registered["set_id"]
    metadata = _latest_metadata(d.home, "model_evaluation")
    assert (metadata["on_registered_set"], metadata["passed_gate"], metadata["serving"]) == (False, False, "none")
    assert metadata["registered_set"] == f"revision 1: {registered['set_id']} (tiny-holdout/{DATE})"
    listing = d.main("model", "list", MODEL)
    assert "serving: none" in listing and f"(other set {other['evaluation_set']}: does not count)" in listing
    assert f"evaluation set: {registered['set_id']} revision 1, 1 acquisition(s): tiny-holdout/{DATE}" in listing
    refused = d.predict()
    assert refused.returncode != 0
    assert (
        f"no version of model '{MODEL}' has passed the quality gate (min mIoU 0.0) on its registered evaluation set "
        f"(revision 1, {registered['set_id']})"
    ) in refused.stdout + refused.stderr


def test_an_evaluation_on_the_registered_set_serves_and_the_set_changes_only_on_purpose(deployment):
    d, version = deployment
    _ok(d.evaluate([HOLDOUT.name]))  # the model's first selection registers its set
    registered = registry.registered_set(d.store, MODEL)
    assert registered["acquisitions"] == [[HOLDOUT.name, DATE]] and "the model had none" in registered["changed_by"]
    assert _latest_metadata(d.home, "model_evaluation")["on_registered_set"] is True
    assert f"* {version}" in d.main("model", "list", MODEL)
    _ok(d.predict())

    # No run can choose the set it is judged on: run config that tries is refused before the run starts.
    tried = d.evaluate([OTHER.name], register_set=True)
    assert tried.returncode != 0 and 'unexpected config entry "register_set"' in tried.stdout + tried.stderr
    assert registry.registered_set(d.store, MODEL) == registered

    # Changing the set is an explicit act outside any run, recorded with a new revision.
    d.main("model", "evaluation-set", MODEL, "--regions", OTHER.name)
    changed = registry.registered_set(d.store, MODEL)
    assert changed["acquisitions"] == [[OTHER.name, DATE]] and changed["revision"] == 2
    assert (
        changed["previous_set_id"] == registered["set_id"]
        and "geo-assets model evaluation-set" in changed["changed_by"]
    )
    _ok(d.evaluate([OTHER.name]))
    assert _latest_metadata(d.home, "evaluation_set")["registered_revision"] == 2


def test_automation_never_registers_a_set(deployment):
    """Runs that a sensor, a schedule or an automation condition launched select a set for a model that has
    none: they register none, and say how to; the same selection launched by hand registers it."""
    d, _ = deployment
    ops = {"evaluation_set": {"config": {"regions": [HOLDOUT.name]}}}
    with dg.instance_for_test() as instance:
        register(instance, regions=load_catalogue(d.store).names(), models=[MODEL])

        def select(tags: dict) -> list[str]:
            result = dg.materialize(
                [evaluation_set],
                partition_key=MODEL,
                resources=_resources(d.store),
                instance=instance,
                run_config={"ops": ops},
                tags=tags,
            )
            assert result.success
            return [e.user_message for e in instance.all_logs(result.run_id)]

        for tag in AUTOMATION_TAGS:
            messages = select({tag: "automation"})
            assert registry.registered_set(d.store, MODEL) is None, f"a run tagged {tag} registered a set"
            assert any(f"geo-assets model evaluation-set {MODEL}" in m for m in messages), messages
        select({})
        assert registry.registered_set(d.store, MODEL)["acquisitions"] == [[HOLDOUT.name, DATE]]


def test_a_pinned_version_that_no_longer_passes_is_refused_not_served(deployment):
    d, version = deployment
    _ok(d.evaluate([HOLDOUT.name]))  # the model's first selection registers its set
    registered = registry.registered_set(d.store, MODEL)
    assert registered["acquisitions"] == [[HOLDOUT.name, DATE]]
    d.main("model", "promote", MODEL, version)
    (evaluation,) = d.evaluations(version)
    assert evaluation["miou"] < 0.99  # a tiny model: the stricter gate below really fails it
    _ok(d.predict())  # gate 0: the pin passes and serves

    # The deployment raises the bar: the pin no longer passes, and is refused (not served), saying why and the way out.
    listing = d.main("model", "list", MODEL, min_miou="0.99")
    assert (
        f"serving: none (pinned to {version}, REFUSED: it does not pass the gate in force (min mIoU 0.99))" in listing
    )
    assert f"! {version}" in listing
    refused = d.predict(min_miou="0.99")
    assert refused.returncode != 0
    message = refused.stdout + refused.stderr
    assert (
        f"model '{MODEL}' is pinned to version {version}, which does not pass the quality gate in force (min mIoU 0.99): "
        f"its best mIoU on the registered evaluation set, revision 1 ({registered['set_id']}), is {evaluation['miou']:.3f}. "
        f"Re-evaluate it (materialise model_evaluation[{MODEL}]), unpin it (`geo-assets model promote {MODEL} --auto`), "
        "or pass an explicit version to predict anyway"
    ) in message
    _ok(d.predict(min_miou="0.99", version=version))  # the named version: the explicit way out


def test_one_damaged_version_record_leaves_the_others_usable_and_is_named(deployment):
    d, version = deployment
    _ok(d.evaluate([HOLDOUT.name]))
    d.store.write_bytes(f"models/{MODEL}/0badc0ffee00/model.json", b"")  # a zero-byte record, as a failed copy leaves
    listing = d.cli("geo-assets", "model", "list", MODEL)
    assert listing.returncode == 0, listing.stderr[-3000:]
    assert f"* {version}" in listing.stdout
    assert (
        f"skipped an unreadable record: {d.store.uri(f'models/{MODEL}/0badc0ffee00/model.json')} is not valid JSON (0 bytes)"
        in listing.stderr
    )
    _ok(d.predict())  # the serving version still predicts


def test_unrelated_work_never_changes_what_the_registered_set_reads(deployment):
    """The registered set records what each acquisition reads (imagery variant, labels' cut). Imagery and
    labels cut again at another tile size do not switch it: the input_changes sensor's request is refused
    naming what changed, and once the labels are cut as registered it reads the registered variant again."""
    d, version = deployment
    _ok(d.evaluate([HOLDOUT.name]))  # the first selection registers the set
    registered = registry.registered_set(d.store, MODEL)
    ((acquisition, pin),) = registered["variants"].items()
    assert acquisition == f"{HOLDOUT.name}/{DATE}" and pin["labels"] == {"source": "synthetic", "tile_size": 64}
    assert "-64px-" in pin["imagery"]

    def cut(asset: str, key: str, tile_size: int, **config) -> None:
        _ok(
            d.cli(
                "dagster",
                "asset",
                "materialize",
                "-m",
                "geo_assets.definitions",
                "--select",
                asset,
                "--partition",
                key,
                "--config-json",
                json.dumps({"ops": {asset: {"config": {"tile_size": tile_size, **config}}}}),
            )
        )

    # Unrelated work on the held-out region: its imagery cut at 64 px with more bands (the variant an
    # unpinned selection would take: the most bands at the labels' tile size), then imagery and labels at 128 px.
    cut("imagery_tiles", f"{DATE}|{HOLDOUT.name}", 64, bands=["blue", "green", "red", "nir", "swir1", "swir2"])
    cut("imagery_tiles", f"{DATE}|{HOLDOUT.name}", 128)
    cut("labels", HOLDOUT.name, 128)
    # What the input_changes sensor requests for the set: its own acquisitions.
    refused = d.evaluate([HOLDOUT.name], acquisitions=[acquisition])
    assert refused.returncode != 0
    assert (
        f"the labels of region '{HOLDOUT.name}' are now cut at 128 px from synthetic; the registered evaluation set "
        f"reads {acquisition} with labels cut at 64 px from synthetic"
    ) in refused.stdout + refused.stderr
    assert registry.registered_set(d.store, MODEL) == registered

    cut("labels", HOLDOUT.name, 64)  # the way out the message names
    _ok(d.evaluate([HOLDOUT.name], acquisitions=[acquisition]))
    (item,) = d.store.read_json(f"manifests/evaluation_set/{MODEL}.json")["items"]
    assert item["imagery"] == pin["imagery"]  # not the 6-band 64 px variant, nor the 128 px one, beside it
    assert _latest_metadata(d.home, "model_evaluation")["on_registered_set"] is True
    assert registry.registered_set(d.store, MODEL) == registered


def test_two_registrations_at_once_never_overwrite_each_other(any_store):
    """Another registration lands between this one's read and its write (two first evaluation_set runs, or a
    run and `geo-assets model evaluation-set`): this one is refused and the other's revision stands, on a
    local folder, the S3 API and the GCS API alike."""

    class Meanwhile:  # the real store; its first read of the set is followed by another writer's registration
        def __init__(self, store):
            self.store, self.raced = store, False

        def __getattr__(self, name):
            return getattr(self.store, name)

        def read_versioned(self, key):
            found = self.store.read_versioned(key)
            if not self.raced:
                self.raced = True
                registry.register_set(self.store, MODEL, [[OTHER.name, DATE]], by="the other writer")
            return found

    for before in (None, [[FIELD.name, DATE]]):  # the first registration, then a change of a registered set
        if before:
            registry.register_set(any_store, MODEL, before, by="setup")
        first = registry.registered_set(any_store, MODEL)
        with pytest.raises(
            ValueError, match=f"the evaluation set of model '{MODEL}' was changed by another writer meanwhile"
        ):
            registry.register_set(Meanwhile(any_store), MODEL, [[HOLDOUT.name, DATE]], by="this writer")
        other = registry.registered_set(any_store, MODEL)
        assert other["changed_by"] == "the other writer" and other["acquisitions"] == [[OTHER.name, DATE]]
        assert other["revision"] == (first["revision"] + 1 if first else 1)
        any_store.delete(f"models/{MODEL}/{registry.EVALUATION_SET_FILE}")
