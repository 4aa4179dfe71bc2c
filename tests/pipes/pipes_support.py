"""Constants and helpers of the remote-training tests (their fixtures are in conftest.py)."""

import hashlib
import io
import json
import os
import re
import zipfile

import dagster as dg

from geo_assets.assets.imagery import imagery_tiles
from geo_assets.assets.labels import labels
from geo_assets.assets.models import trained_model, training_set
from geo_assets.cli.commands import register
from geo_assets.cli.demo import failure_message
from geo_assets.geo.regions import Region, load_catalogue, save_catalogue
from geo_assets.ml import registry
from geo_assets.partitions import region_date_key
from resources.compute import LocalPoolCompute
from resources.gate import ModelGate
from resources.imagery import ImageryResource
from resources.storage import ManifestIOManager, StorageResource
from resources.training import InProcessTraining
from tests.tiny_world import TRAIN as TINY_TRAIN

DATA_BUCKET = "geo-assets-data"
PIPES_BUCKET = "geo-assets-pipes"
ACCESS_KEY, SECRET_KEY, REGION = "pipes-test-key", "pipes-test-secret", "us-east-1"
TINY = Region(
    "tiny-field", (400000.0, 5120000.0, 401280.0, 5121280.0), "EPSG:32631", "synthetic", "synthetic", ("2024-06-01",)
)
DATE = "2024-06-01"
MODEL = "tiny-model"
# Tiny and fast, as in tests/dagster; seeded, so two trainings on the CPU give the same weights.
TRAIN = {**TINY_TRAIN, "device": "cpu"}


def resources_for(storage: StorageResource, training) -> dict:
    return {
        "storage": storage,
        "compute": LocalPoolCompute(workers=2),
        "io_manager": ManifestIOManager(storage=storage),
        "imagery": ImageryResource(),
        "gate": ModelGate(min_miou=0.0),
        "training": training,
    }


def materialize(assets, key, resources, instance, ops=None, **kw):
    return dg.materialize(
        assets,
        partition_key=key,
        resources=resources,
        instance=instance,
        run_config={"ops": ops or {}},
        raise_on_error=False,
        **kw,
    )


def prepare(storage: StorageResource, instance) -> None:
    """Imagery, labels and the training set of one tiny region, in the bucket."""
    store = storage.store()
    catalogue = load_catalogue(store)
    catalogue.add(TINY)
    save_catalogue(store, catalogue)
    register(instance, regions=[TINY.name], models=[MODEL])
    resources = resources_for(storage, InProcessTraining())
    tiles = {"config": {"tile_size": 64}}
    assert materialize(
        [imagery_tiles], region_date_key(TINY.name, DATE), resources, instance, {"imagery_tiles": tiles}
    ).success
    assert materialize([labels], TINY.name, resources, instance, {"labels": tiles}).success
    assert materialize(
        [training_set], MODEL, resources, instance, {"training_set": {"config": {"regions": [TINY.name]}}}
    ).success


def job_env() -> dict:
    """What a remote container starts with here: this machine's environment, no Pipes variables of its own."""
    return {k: v for k, v in os.environ.items() if not k.startswith("DAGSTER_PIPES_")}


def onnx_model(data: bytes) -> tuple[bytes, set[str]]:
    """An ONNX file as its serialised model, but the range constraints torch copies into the graph's
    metadata in set order (as in `archive`), which are compared as a set."""
    import onnx

    model = onnx.load_from_string(data)
    props = model.graph.metadata_props
    (constraints,) = [p for p in props if p.key.endswith(".range_constraints")]
    props.remove(constraints)
    return model.SerializeToString(), {c.strip() for c in re.findall(r"[^{},]+: VR\[[^\]]*\]", constraints.value)}


def archive(data: bytes) -> dict:
    """A torch.export archive's members: weights and every other file byte for byte, the program as JSON data.

    torch writes one map of the program (its range constraints) in set order, which follows Python's
    hash seed, so two processes exporting the same model may order it differently; the id derived
    from the serialised program then differs too. Everything else is the same bytes.
    """
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        members = {name.split("/", 1)[1]: z.read(name) for name in z.namelist()}
    members.pop(".data/serialization_id")
    members["models/model.json"] = json.loads(members["models/model.json"])
    assert any(name.startswith("data/weights/weight_") for name in members)
    return members


def train(storage: StorageResource, training, instance, **config):
    """trained_model[tiny-model] with `training` doing the training."""
    return materialize(
        [training_set, trained_model],
        MODEL,
        resources_for(storage, training),
        instance,
        {"trained_model": {"config": {**TRAIN, **config}}},
        selection=["trained_model"],
    )


def metadata(result) -> dict:
    return {k: v.value for k, v in result.asset_materializations_for_node("trained_model")[0].metadata.items()}


# Differ between any two trainings, wherever they run; `files` holds the digests of the exported bytes
# (the .pt2 archive and the ONNX file are equal as models, not byte for byte: checked below).
VOLATILE = {"created_at", "train_seconds", "files"}
WHERE = {"training", "train_seconds", "manifest_digest"}  # metadata saying where and when, not what


def train_twice_and_compare(storage: StorageResource, remote_training, instance):
    """Train in-process, forget the version, train it remotely: the same version, weights and record.
    Returns the remote run, its record and its metadata."""
    store = storage.store()
    local = train(storage, InProcessTraining(), instance)
    assert local.success, failure_message(local)
    expected = local.output_for_node("trained_model")
    prefix = registry.model_prefix(MODEL, expected["version"])
    files = {key: store.read_bytes(key) for key in store.list(prefix)}
    assert set(files) == {
        f"{prefix}/{name}" for name in (registry.MODEL_FILE, registry.WEIGHTS_FILE, registry.ONNX_FILE)
    }
    for key in files:  # forget the version: the job trains and stores it again
        store.delete(key)

    remote = train(storage, remote_training, instance)
    assert remote.success, failure_message(remote)
    record = remote.output_for_node("trained_model")
    assert record["version"] == expected["version"]
    assert store.list(prefix) == sorted(files)
    assert archive(store.read_bytes(f"{prefix}/{registry.WEIGHTS_FILE}")) == archive(
        files[f"{prefix}/{registry.WEIGHTS_FILE}"]
    )
    assert onnx_model(store.read_bytes(f"{prefix}/{registry.ONNX_FILE}")) == onnx_model(
        files[f"{prefix}/{registry.ONNX_FILE}"]
    )
    assert {k: v for k, v in record.items() if k not in VOLATILE} == {
        k: v for k, v in expected.items() if k not in VOLATILE
    }
    assert store.read_json(f"{prefix}/{registry.MODEL_FILE}") == record
    for name, recorded in record["files"].items():  # the record's digests are those of the bytes the job stored
        data = store.read_bytes(f"{prefix}/{name}")
        assert (len(data), hashlib.sha256(data).hexdigest()) == (recorded["bytes"], recorded["sha256"]), name
    remote_meta, local_meta = metadata(remote), metadata(local)
    assert local_meta["training"] == "in-process"
    extra = set(remote_meta) - set(local_meta)  # where the job ran (its id, machine): remote only
    assert {k: v for k, v in remote_meta.items() if k not in WHERE | extra} == {
        k: v for k, v in local_meta.items() if k not in WHERE
    }
    return remote, record, remote_meta
