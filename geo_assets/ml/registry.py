"""The model store: immutable versions, their immutable evaluations, and the serving alias.

    models/<name>/<version>/model.json, model.pt2, model.onnx   one trained version (never rewritten); model.json
                                                                 carries the input normalisation (bands, scale, offset)
    models/<name>/<version>/evaluations/<id>.json                one per (version, evaluation set, threshold)
    models/<name>/serving.json                                   a version promoted by hand (optional)

A version id is derived from the training config, the data versions of its inputs, the
runtime that shapes the weights (device type, torch version) and a digest of the training code
(`ml/training_code.py` lists the modules), so the same config on the same data, runtime and
training code names the same version. The serving version of a model is the one promoted
by hand if there is one, else the newest version that passed the quality gate in force.
"""

from __future__ import annotations

import datetime
import hashlib
import json

from geo_assets.geo.store import ObjectNotFoundError, Store
from geo_assets.ml.normalisation import Normalisation

MODEL_FILE = "model.json"
EVALUATIONS_DIR = "evaluations"
WEIGHTS_FILE = "model.pt2"  # a torch.export archive: loads with torch alone
ONNX_FILE = "model.onnx"  # the same model in ONNX: runs with onnxruntime alone (versions trained since it exists)
SERVING_FILE = "serving.json"


def _hash(value: object, length: int) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:length]


def version_id(config: dict, input_versions: dict[str, str], runtime: dict[str, str], training_code: str) -> str:
    """Config, input data versions, runtime (device type, torch version) and the training code's digest
    (`ml.training_code.digest()`): what decides the weights."""
    return _hash({"config": config, "inputs": input_versions, "runtime": runtime, "code": training_code}, 12)


def input_versions(dataset_manifest: dict) -> dict[str, str]:
    """`region/date` -> the data versions of its imagery and labels, for a training or evaluation set."""
    return {f"{i['region']}/{i['date']}": i["imagery_version"] + i["labels_version"] for i in dataset_manifest["items"]}


def evaluation_id(input_versions: dict[str, str], min_miou: float) -> str:
    """An evaluation set (its data versions) judged at one threshold."""
    return _hash({"inputs": input_versions, "min_miou": min_miou}, 12)


def normalisation(record: dict) -> Normalisation:
    """The input normalisation a version was trained with, to apply wherever it predicts.

    Stored in model.json as {"bands", "scale", "offset"}; versions stored before it was recorded
    were trained on DN / 10000 clipped to [0, 1.5], which is what they get.
    """
    return Normalisation.from_record(record)


def model_prefix(name: str, version: str) -> str:
    return f"models/{name}/{version}"


def evaluation_key(name: str, version: str, evaluation: str) -> str:
    return f"{model_prefix(name, version)}/{EVALUATIONS_DIR}/{evaluation}.json"


def list_versions(store: Store, name: str) -> list[dict]:
    """Every stored version of a model, oldest first, each with its evaluations (oldest first)."""
    keys = store.list(f"models/{name}")  # one listing finds versions and evaluations
    versions = []
    for key in keys:
        if key.endswith("/" + MODEL_FILE):
            record = store.read_json(key)
            evals = [store.read_json(k) for k in keys if k.startswith(key.rsplit("/", 1)[0] + f"/{EVALUATIONS_DIR}/")]
            record["evaluations"] = sorted(evals, key=lambda e: e["evaluated_at"])
            versions.append(record)
    return sorted(versions, key=lambda r: (r["created_at"], r["version"]))


def passes(record: dict, min_miou: float) -> bool:
    """Servable under the gate in force: an evaluation passed at this threshold or a stricter one."""
    return any(e["passed"] and e["min_miou"] >= min_miou for e in record.get("evaluations", []))


def _summary(versions: list[dict]) -> str:
    def best(r):
        scored = [e["miou"] for e in r["evaluations"] if e["miou"] is not None]
        return f"best mIoU {max(scored):.3f}" if scored else "not evaluated"

    return ", ".join(f"{r['version']} ({best(r)})" for r in versions)


def serving_pin(store: Store, name: str) -> dict | None:
    try:
        return store.read_json(f"models/{name}/{SERVING_FILE}")
    except ObjectNotFoundError:
        return None


def serving_version(store: Store, name: str, min_miou: float, versions: list[dict] | None = None) -> dict:
    """The version that predicts for `name` when run config names none."""
    versions = list_versions(store, name) if versions is None else versions
    if not versions:
        raise LookupError(f"model {name!r} has no trained versions; materialise trained_model[{name}] first")
    pin = serving_pin(store, name)
    if pin is not None:
        for record in versions:
            if record["version"] == pin["version"]:
                return record
        raise LookupError(f"model {name!r} is pinned to version {pin['version']}, which is not stored; "
                          f"run `geo-assets model promote {name} --auto` or promote a stored version")
    passed = [r for r in versions if passes(r, min_miou)]
    if not passed:
        raise LookupError(
            f"no version of model {name!r} has passed the quality gate (min mIoU {min_miou}): {_summary(versions)}. "
            "Materialise model_evaluation, or pass an explicit version to predict anyway"
        )
    return passed[-1]


def serving_id(store: Store, name: str, min_miou: float, versions: list[dict] | None = None) -> str | None:
    """The serving version's id, or None when no version serves."""
    try:
        return serving_version(store, name, min_miou, versions)["version"]
    except LookupError:
        return None


def resolve_version(store: Store, name: str, version: str | None, min_miou: float,
                    versions: list[dict] | None = None) -> dict:
    """The requested version, or by default the serving one."""
    versions = list_versions(store, name) if versions is None else versions
    if version is None:
        return serving_version(store, name, min_miou, versions)
    for record in versions:
        if record["version"] == version:
            return record
    if not versions:
        raise LookupError(f"model {name!r} has no trained versions; materialise trained_model[{name}] first")
    raise LookupError(f"model {name!r} has no version {version!r}; versions: {', '.join(r['version'] for r in versions)}")


def promote(store: Store, name: str, version: str, min_miou: float) -> dict:
    """Pin `version` as the serving one; only a version that passed the gate in force may serve."""
    record = resolve_version(store, name, version, min_miou)
    if not passes(record, min_miou):
        raise ValueError(
            f"version {version} of model {name!r} has not passed the quality gate (min mIoU {min_miou}); "
            "evaluate it first: only gated versions can be promoted"
        )
    pin = {"version": version, "promoted_at": datetime.datetime.now(datetime.timezone.utc).isoformat()}
    store.write_json(f"models/{name}/{SERVING_FILE}", pin)
    return pin


def unpin(store: Store, name: str) -> bool:
    """Back to the default: the newest version that passed the gate. True when a pin was removed."""
    key = f"models/{name}/{SERVING_FILE}"
    if not store.exists(key):
        return False
    store.delete(key)
    return True
