"""The model store: immutable versions, their immutable evaluations, the registered evaluation set
and the serving alias.

    models/<name>/<version>/model.json, model.pt2, model.onnx   one trained version (never rewritten); model.json
                                                                 carries the input normalisation (bands, scale, offset)
    models/<name>/<version>/evaluations/<id>.json                one per (version, evaluation set, threshold)
    models/<name>/evaluation_set.json                            the set the model is judged on: its acquisitions,
                                                                 their digest (the set id) and a revision number
    models/<name>/serving.json                                   a version promoted by hand (optional)
    models/<name>/definition.json                                what `geo-assets model add` fixed: architecture,
                                                                 bands, training and evaluation sets (optional)

A version id is derived from the training config, the data versions of its inputs, the
runtime that shapes the weights (device type, torch version) and a digest of the training code
(`ml/training_code.py` lists the modules), so the same config on the same data, runtime and
training code names the same version.

A version passes the gate in force when an evaluation on the model's registered evaluation set
(same acquisitions; their data versions may have been refreshed) reached the threshold. Evaluations
on any other set are kept and shown, but never make a version serve. The serving version is the one
promoted by hand if there is one and it still passes (a pin that no longer passes is refused, not
served), else the newest version that passes.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging

from geo_assets.geo.manifests import DatasetManifest
from geo_assets.geo.store import CorruptObjectError, ObjectNotFoundError, Store
from geo_assets.ml.normalisation import Normalisation

MODEL_FILE = "model.json"
EVALUATIONS_DIR = "evaluations"
WEIGHTS_FILE = "model.pt2"  # a torch.export archive: loads with torch alone
ONNX_FILE = "model.onnx"  # the same model in ONNX: runs with onnxruntime alone (versions trained since it exists)
SERVING_FILE = "serving.json"
EVALUATION_SET_FILE = "evaluation_set.json"
DEFINITION_FILE = "definition.json"
log = logging.getLogger(__name__)


def _hash(value: object, length: int) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:length]


def version_id(config: dict, input_versions: dict[str, str], runtime: dict[str, str], training_code: str) -> str:
    """Config, input data versions, runtime (device type, torch version) and the training code's digest
    (`ml.training_code.digest()`): what decides the weights."""
    # The inputs as ordered pairs: the set's order decides which tile each chip draw picks.
    return _hash(
        {"config": config, "inputs": list(input_versions.items()), "runtime": runtime, "code": training_code}, 12
    )


def input_versions(dataset_manifest: DatasetManifest) -> dict[str, str]:
    """`region/date` -> the data versions of its imagery and labels, for a training or evaluation set."""
    return {f"{i['region']}/{i['date']}": i["imagery_version"] + i["labels_version"] for i in dataset_manifest["items"]}


def evaluation_id(input_versions: dict[str, str], min_miou: float, evaluation_set: str) -> str:
    """An evaluation set (its id and data versions) judged at one threshold."""
    return _hash({"inputs": input_versions, "min_miou": min_miou, "set": evaluation_set}, 12)


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
            record = _readable(store, key)
            if record is None:
                continue
            evals = [_readable(store, k) for k in keys if k.startswith(key.rsplit("/", 1)[0] + f"/{EVALUATIONS_DIR}/")]
            record["evaluations"] = sorted((e for e in evals if e is not None), key=lambda e: e["evaluated_at"])
            versions.append(record)
    return sorted(versions, key=lambda r: (r["created_at"], r["version"]))


def _readable(store: Store, key: str) -> dict | None:
    """A version or evaluation record, or None (with a warning naming the file) where it is corrupt:
    one damaged record must not make the model's other versions unusable."""
    try:
        return store.read_json(key)
    except CorruptObjectError as exc:
        log.warning("skipped an unreadable record: %s", exc)
        return None


def _unavailable(store: Store, name: str, version: str | None = None) -> str:
    """Why model `name` (or its `version`) cannot be found: a damaged record is named, never taken for a
    version that was not trained."""
    stored = [k for k in store.list(f"models/{name}") if k.endswith("/" + MODEL_FILE)]
    records = stored if version is None else [k for k in stored if k == f"{model_prefix(name, version)}/{MODEL_FILE}"]
    for key in records:
        try:
            store.read_json(key)
        except CorruptObjectError as exc:
            return f"model {name!r}: the record of version {key.split('/')[-2]} cannot be read ({exc}); restore it, or train a new version"
    if version is None or not stored:
        return f"model {name!r} has no trained versions; materialise trained_model[{name}] first"
    return f"model {name!r} has no version {version!r}"


def acquisitions(dataset_manifest: DatasetManifest) -> list[list[str]]:
    """The (region, date) pairs of an evaluation or training set, sorted: what the set is, whatever their data versions."""
    return sorted([i["region"], i["date"]] for i in dataset_manifest["items"])


def set_id(pairs: list[list[str]], variants: dict | None = None) -> str:
    """An evaluation set's identity: a digest of its acquisitions and of what each reads (`set_variants`:
    the imagery variant, the labels' cut), not of their data versions, which the input_changes sensor
    refreshes. Sets registered before variants were recorded are their acquisitions alone."""
    pairs = sorted([str(r), str(d)] for r, d in pairs)
    return _hash({"acquisitions": pairs, "variants": variants}, 12) if variants else _hash(pairs, 12)


def set_variants(manifest: DatasetManifest) -> dict | None:
    """REGION/DATE -> the imagery variant and the labels' cut each acquisition of a set manifest reads
    (None for a manifest made before labels' cuts were recorded)."""
    if not all("labels_cut" in i for i in manifest["items"]):
        return None
    return {
        f"{i['region']}/{i['date']}": {"imagery": i["imagery"], "labels": i["labels_cut"]} for i in manifest["items"]
    }


def judged_set_id(manifest: DatasetManifest, registered: dict | None) -> str:
    """The id of the set `manifest` holds, as the registered set is identified: with its variants, unless
    the registered set predates them."""
    variants = set_variants(manifest) if registered is None or registered.get("variants") else None
    return set_id(acquisitions(manifest), variants)


def registered_set(store: Store, name: str) -> dict | None:
    """The evaluation set `name` is judged on, or None before one is registered."""
    try:
        return store.read_json(f"models/{name}/{EVALUATION_SET_FILE}")
    except ObjectNotFoundError:
        return None


def register_set(
    store: Store, name: str, pairs: list[list[str]], by: str, variants: dict | None = None
) -> tuple[dict, bool]:
    """Make `pairs`, reading `variants` (`set_variants`), the evaluation set of `name` (an explicit act).
    Returns the record and whether it changed: the same set keeps its revision, another makes the next one.
    A conditional write: of two registrations at once (two first evaluation_set runs, a run and the CLI),
    one is refused, and neither overwrites the other's revision."""
    key = f"models/{name}/{EVALUATION_SET_FILE}"
    found = store.read_versioned(key)
    current = json.loads(found[0]) if found else None
    identity = set_id(pairs, variants)
    if current is not None and current["set_id"] == identity:
        return current, False
    record = {
        "model": name,
        "set_id": identity,
        "revision": (current["revision"] + 1) if current else 1,
        "acquisitions": sorted([str(r), str(d)] for r, d in pairs),
        "changed_at": datetime.datetime.now(datetime.UTC).isoformat(),
        "changed_by": by,
        "previous_set_id": current["set_id"] if current else None,
        "variants": variants or {},
    }
    data = (json.dumps(record, indent=1, sort_keys=True) + "\n").encode()
    if not (store.create(key, data) if found is None else store.replace(key, data, found[1])):
        raise ValueError(
            f"the evaluation set of model {name!r} was changed by another writer meanwhile; nothing was "
            f"written: see it with `geo-assets model list {name}`, and register again if it is not the one wanted"
        )
    return record, True


def definition(store: Store, name: str) -> dict | None:
    """What `geo-assets model add` fixed for `name` (architecture, hyperparameters, bands, the training and
    evaluation sets' regions and dates), or None for a model defined by its runs' config alone."""
    try:
        return store.read_json(f"models/{name}/{DEFINITION_FILE}")
    except ObjectNotFoundError:
        return None


def add_definition(store: Store, name: str, record: dict) -> dict:
    """Store the definition of a new model name; written once (a conditional create), never replaced."""
    record = {"model": name, **record, "added_at": datetime.datetime.now(datetime.UTC).isoformat()}
    data = (json.dumps(record, indent=1, sort_keys=True) + "\n").encode()
    if not store.create(f"models/{name}/{DEFINITION_FILE}", data):
        raise ValueError(f"model name {name!r} is taken: models/{name}/{DEFINITION_FILE} exists; choose another name")
    return record


def on_set(evaluation: dict, registered: dict | None) -> bool:
    """Whether an evaluation was made on the registered set (evaluations stored before sets were recorded: no)."""
    return registered is not None and evaluation.get("evaluation_set") == registered["set_id"]


def passes(record: dict, min_miou: float, registered: dict | None) -> bool:
    """Servable under the gate in force: an evaluation on the registered set passed at this threshold or a stricter one."""
    return any(
        e["passed"] and e["min_miou"] >= min_miou and on_set(e, registered) for e in record.get("evaluations", [])
    )


def best_miou(record: dict, registered: dict | None) -> float | None:
    """The version's best mIoU on the registered set, None if it was never evaluated on it."""
    scored = [e["miou"] for e in record.get("evaluations", []) if e["miou"] is not None and on_set(e, registered)]
    return max(scored) if scored else None


def _summary(versions: list[dict], registered: dict | None) -> str:
    def best(r):
        score = best_miou(r, registered)
        return f"best mIoU {score:.3f}" if score is not None else "not evaluated on the registered set"

    return ", ".join(f"{r['version']} ({best(r)})" for r in versions)


def _no_set(name: str) -> str:
    return (
        f"model {name!r} has no registered evaluation set: materialise evaluation_set[{name}] or run "
        f"`geo-assets model evaluation-set {name} --regions ...`"
    )


def serving_pin(store: Store, name: str) -> dict | None:
    try:
        return store.read_json(f"models/{name}/{SERVING_FILE}")
    except ObjectNotFoundError:
        return None


def serving_version(store: Store, name: str, min_miou: float, versions: list[dict] | None = None) -> dict:
    """The version that predicts for `name` when run config names none."""
    versions = list_versions(store, name) if versions is None else versions
    if not versions:
        raise LookupError(_unavailable(store, name))
    registered = registered_set(store, name)
    pin = serving_pin(store, name)
    if pin is not None:
        record = next((r for r in versions if r["version"] == pin["version"]), None)
        if record is None:
            raise LookupError(
                f"model {name!r} is pinned to version {pin['version']}, which is not stored or unreadable "
                f"({_unavailable(store, name, pin['version'])}); "
                f"run `geo-assets model promote {name} --auto` or promote a stored version"
            )
        if not passes(record, min_miou, registered):
            # Refused, not served: a pin says "this one", never "this one whatever the gate says now".
            best = best_miou(record, registered)
            on = f"revision {registered['revision']} ({registered['set_id']})" if registered else "none registered"
            raise LookupError(
                f"model {name!r} is pinned to version {pin['version']}, which does not pass the quality gate in force "
                f"(min mIoU {min_miou}): its best mIoU on the registered evaluation set, {on}, is "
                f"{'none (not evaluated on it)' if best is None else f'{best:.3f}'}. Re-evaluate it (materialise "
                f"model_evaluation[{name}]), unpin it (`geo-assets model promote {name} --auto`), or pass an explicit "
                "version to predict anyway"
            )
        return record
    passed = [r for r in versions if passes(r, min_miou, registered)]
    if not passed:
        if registered is None:
            raise LookupError(_no_set(name))
        raise LookupError(
            f"no version of model {name!r} has passed the quality gate (min mIoU {min_miou}) on its registered "
            f"evaluation set (revision {registered['revision']}, {registered['set_id']}): {_summary(versions, registered)}. "
            "Materialise model_evaluation, or pass an explicit version to predict anyway"
        )
    return passed[-1]


def serving_state(store: Store, name: str, min_miou: float, versions: list[dict] | None = None) -> dict:
    """What serves and why, for every listing: the serving id (None when none does, with the refusal), the pin
    and its state, and the registered evaluation set."""
    versions = list_versions(store, name) if versions is None else versions
    try:
        serving, refused = serving_version(store, name, min_miou, versions)["version"], None
    except LookupError as exc:
        serving, refused = None, str(exc)
    pin = serving_pin(store, name)
    if pin is None:
        state = "newest gated" if serving else "none serves"
    elif serving == pin["version"]:
        state = f"pinned to {pin['version']} (passes the gate in force)"
    else:
        state = f"pinned to {pin['version']}, REFUSED: it does not pass the gate in force (min mIoU {min_miou})"
    return {
        "serving": serving,
        "pinned": pin["version"] if pin else None,
        "state": state,
        "refused": refused,
        "registered_set": registered_set(store, name),
    }


def serving_id(store: Store, name: str, min_miou: float, versions: list[dict] | None = None) -> str | None:
    """The serving version's id, or None when no version serves."""
    try:
        return serving_version(store, name, min_miou, versions)["version"]
    except LookupError:
        return None


def resolve_version(
    store: Store, name: str, version: str | None, min_miou: float, versions: list[dict] | None = None
) -> dict:
    """The requested version, or by default the serving one."""
    versions = list_versions(store, name) if versions is None else versions
    if version is None:
        return serving_version(store, name, min_miou, versions)
    for record in versions:
        if record["version"] == version:
            return record
    if not versions:
        raise LookupError(_unavailable(store, name, version))
    raise LookupError(f"{_unavailable(store, name, version)}; versions: {', '.join(r['version'] for r in versions)}")


def promote(store: Store, name: str, version: str, min_miou: float) -> dict:
    """Pin `version` as the serving one; only a version that passed the gate in force may serve."""
    record = resolve_version(store, name, version, min_miou)
    if not passes(record, min_miou, registered_set(store, name)):
        raise ValueError(
            f"version {version} of model {name!r} has not passed the quality gate (min mIoU {min_miou}) on its "
            "registered evaluation set; evaluate it first: only gated versions can be promoted"
        )
    pin = {"version": version, "promoted_at": datetime.datetime.now(datetime.UTC).isoformat()}
    store.write_json(f"models/{name}/{SERVING_FILE}", pin)
    return pin


def unpin(store: Store, name: str) -> bool:
    """Back to the default: the newest version that passed the gate. True when a pin was removed."""
    key = f"models/{name}/{SERVING_FILE}"
    if not store.exists(key):
        return False
    store.delete(key)
    return True
