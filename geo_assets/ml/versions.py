"""Train one model version and store it: the same code wherever training runs.

The step's own process and a remote job (a Vertex AI custom job, an ECS task) both call
`train_version` with the same request, so the version id, the exported weights and the record
are the same either way. The version id is computed here, on the machine that trains, because
the device type and torch version that shape the weights are part of it.
"""

from __future__ import annotations

import datetime
from dataclasses import asdict, dataclass, fields
from typing import Callable

import numpy as np

from geo_assets.geo.landcover import CLASSES
from geo_assets.geo.store import ObjectNotFoundError, Store
from geo_assets.geo.tilework import Mapper
from geo_assets.ml import registry, training_code
from geo_assets.ml.device import select_device
from geo_assets.ml.normalisation import Normalisation
from geo_assets.ml.pairs import load_pairs

Log = Callable[[str], None]


@dataclass(frozen=True)
class TrainingRequest:
    """What to train: a model name, its training config and the training set it learns from."""

    model: str
    settings: dict  # the run config (TrainConfig's fields), hyperparameters as the architecture takes them
    training_set: dict  # the training_set manifest: acquisitions, bands, data versions

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, value: dict) -> TrainingRequest:
        expected = {f.name for f in fields(cls)}
        if not isinstance(value, dict) or set(value) != expected:
            got = sorted(value) if isinstance(value, dict) else type(value).__name__
            raise ValueError(f"a training request has the fields {sorted(expected)}, got {got}")
        return cls(**value)


@dataclass(frozen=True)
class TrainedVersion:
    record: dict  # models/<name>/<version>/model.json
    reused: bool  # the version was stored before: nothing was trained


def load_acquisitions(store: Store, manifest: dict, mapper: Mapper, normalise: Normalisation) -> list[list[tuple[np.ndarray, np.ndarray]]]:
    """Per acquisition of a training or evaluation set, its (image, label) tile pairs as `normalise` makes them."""
    labels = {key: store.read_json(key) for key in {item["labels"] for item in manifest["items"]}}  # one read a region
    return [load_pairs(store, store.read_json(item["imagery"]), labels[item["labels"]], mapper, normalise)
            for item in manifest["items"]]


def load_set(store: Store, manifest: dict, mapper: Mapper, normalise: Normalisation) -> list[tuple[np.ndarray, np.ndarray]]:
    """(image, label) tile pairs of every acquisition of a training or evaluation set, as `normalise` makes them."""
    return [p for pairs in load_acquisitions(store, manifest, mapper, normalise) for p in pairs]


def version_of(request: TrainingRequest, runtime: dict[str, str]) -> str:
    """The version id `request` names on `runtime`, with this process's training code: an edit to that
    code is a new version, never a reuse of weights the code of today would not make."""
    inputs = registry.input_versions(request.training_set)
    return registry.version_id(request.settings, inputs, runtime, training_code.digest())


def train_version(store: Store, request: TrainingRequest, mapper: Mapper, log: Log) -> TrainedVersion:
    """Reuse the stored version this request names on this runtime, or train, export and store it."""
    # torch here, not at the top: the requests are built in processes that never train.
    import torch

    from geo_assets.ml.predict import EXPORTS
    from geo_assets.ml.train import TrainConfig, train

    settings, training_set = request.settings, request.training_set
    device = select_device(settings["device"])
    runtime = {"device": device.type, "torch": torch.__version__}
    inputs = registry.input_versions(training_set)
    code = training_code.identity()
    version = version_of(request, runtime)
    prefix = registry.model_prefix(request.model, version)
    record_key = f"{prefix}/{registry.MODEL_FILE}"
    try:
        return TrainedVersion(store.read_json(record_key), reused=True)  # one read, no exists-then-read
    except ObjectNotFoundError:
        pass

    bands = training_set["bands"]
    acquisitions = load_acquisitions(store, training_set, mapper, Normalisation.identity(bands))
    data = [p for pairs in acquisitions for p in pairs]
    groups = [i for i, pairs in enumerate(acquisitions) for _ in pairs]  # each acquisition is drawn alike
    normalisation = Normalisation.fit([d[0] for d in data], bands)  # stored with the version, applied at prediction
    log(f"training {settings['architecture']} on {len(data)} tiles from {len(inputs)} acquisitions ({device})")
    config = TrainConfig(**{f.name: settings[f.name] for f in fields(TrainConfig) if f.name != "device"}, device=str(device))
    result = train(
        [normalisation.apply(d[0]) for d in data], [d[1] for d in data], in_channels=len(bands), num_classes=len(CLASSES),
        config=config, progress=lambda e, n, loss: log(f"epoch {e}/{n}: loss {loss:.4f}"),
        groups=groups,
    )
    for file, export in EXPORTS.items():  # model.pt2 (torch) and model.onnx (ONNX Runtime)
        with store.writing(f"{prefix}/{file}") as tmp:
            export(result.model, tmp, len(bands))
    record = {
        "name": request.model,
        "version": version,
        "created_at": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "config": settings,
        "bands": bands,
        "normalisation": normalisation.to_json(),
        "classes": list(CLASSES),
        "inputs": inputs,
        "training_set": [{k: i[k] for k in ("region", "date", "footprint", "ground") if k in i} for i in training_set["items"]],
        "runtime": runtime,
        "training_code": code,
        "weights": f"{prefix}/{registry.WEIGHTS_FILE}",
        "loss_curve": [round(x, 6) for x in result.loss_curve],
        "train_seconds": round(result.seconds, 2),
        "device": result.device,
    }
    store.write_json(record_key, record)  # written last: a version exists once its record does
    return TrainedVersion(record, reused=False)
