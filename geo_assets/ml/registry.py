"""The model store: immutable versions under models/<name>/<version>/, and which ones passed the gate.

A version id is derived from the training config and the data versions of its inputs, so the same
config on the same data names the same version, and a version's files are never rewritten.
"""

from __future__ import annotations

import hashlib
import json

from geo_assets.geo.store import Store

MODEL_FILE = "model.json"
EVALUATION_FILE = "evaluation.json"
WEIGHTS_FILE = "model.pt2"  # a torch.export archive: loads with torch alone


def version_id(config: dict, input_versions: dict[str, str]) -> str:
    payload = json.dumps({"config": config, "inputs": input_versions}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


def model_prefix(name: str, version: str) -> str:
    return f"models/{name}/{version}"


def list_versions(store: Store, name: str) -> list[dict]:
    """Every stored version of a model, oldest first, each with its evaluation when there is one."""
    versions = []
    keys = store.list(f"models/{name}")  # one listing tells which versions have an evaluation
    for key in keys:
        if key.endswith("/" + MODEL_FILE):
            record = store.read_json(key)
            eval_key = key.rsplit("/", 1)[0] + "/" + EVALUATION_FILE
            record["evaluation"] = store.read_json(eval_key) if eval_key in keys else None
            versions.append(record)
    return sorted(versions, key=lambda r: (r["created_at"], r["version"]))


def resolve_version(store: Store, name: str, version: str | None = None) -> dict:
    """The requested version, or by default the latest one whose evaluation passed the quality gate."""
    versions = list_versions(store, name)
    if not versions:
        raise LookupError(f"model {name!r} has no trained versions; materialise trained_model[{name}] first")
    if version is not None:
        for record in versions:
            if record["version"] == version:
                return record
        raise LookupError(
            f"model {name!r} has no version {version!r}; versions: {', '.join(r['version'] for r in versions)}"
        )
    passed = [r for r in versions if r["evaluation"] and r["evaluation"]["passed"]]
    if not passed:
        summary = ", ".join(
            f"{r['version']} ({'mIoU %.3f' % r['evaluation']['miou'] if r['evaluation'] else 'not evaluated'})"
            for r in versions
        )
        raise LookupError(
            f"no version of model {name!r} has passed the quality gate: {summary}. "
            "Materialise model_evaluation, or pass an explicit version to predict anyway"
        )
    return passed[-1]
