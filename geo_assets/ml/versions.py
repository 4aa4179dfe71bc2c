"""Train one model version and store it: the same code wherever training runs.

The step's own process and a remote job (a Vertex AI custom job, an ECS task) both call
`train_version` with the same request, so the version id, the exported weights and the record
are the same either way. The version id is computed here, on the machine that trains, because
the device type and torch version that shape the weights are part of it.
"""

from __future__ import annotations

import datetime
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from functools import partial
from pathlib import Path

from geo_assets.engine.batches import Mapper
from geo_assets.engine.threads import read_ahead
from geo_assets.geo.integrity import file_record
from geo_assets.geo.landcover import CLASSES
from geo_assets.geo.manifests import DatasetManifest
from geo_assets.geo.store import ObjectNotFoundError, Store
from geo_assets.ml import registry, training_code
from geo_assets.ml.device import select_device
from geo_assets.ml.memory import check_tiles_held
from geo_assets.ml.normalisation import BandMoments, Normalisation
from geo_assets.ml.pairs import SetTiles, validate_pair

__all__ = ["Log", "TrainedVersion", "TrainingRequest", "survey", "train_version", "version_of"]

Log = Callable[[str], None]


@dataclass(frozen=True)
class TrainingRequest:
    """What to train: a model name, its training config and the training set it learns from."""

    model: str
    settings: dict  # the run config (TrainConfig's fields), hyperparameters as the architecture takes them
    training_set: DatasetManifest  # the training_set manifest: acquisitions, bands, data versions

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


def survey(
    tiles: SetTiles, mapper: Mapper, window: int, normalise: Normalisation, num_classes: int
) -> tuple[BandMoments, list[bool]]:
    """One pass over a training set's tiles, `window` at a time: each pair checked, the sums a
    normalisation is fitted from, and whether each tile holds labels (what chips are drawn from)."""

    def summary(index: int) -> tuple[tuple, bool]:
        image, label = tiles.read(index, normalise)  # dropped on return: a window's tiles at most are alive
        labelled = validate_pair(tiles.names[index], image, label, len(normalise.bands), num_classes)
        return BandMoments.of(image), labelled

    moments, labelled = BandMoments(len(normalise.bands)), []
    windows = [range(i, min(i + window, len(tiles))) for i in range(0, len(tiles), window)]
    for results in read_ahead(lambda indices: mapper(summary, list(indices)), windows):
        for sums, flag in results:  # in the tiles' order: the same sums as a fit over the whole list
            moments.add(*sums)
            labelled.append(flag)
    return moments, labelled


def version_of(request: TrainingRequest, runtime: dict[str, str]) -> str:
    """The version id `request` names on `runtime`, with this process's training code: an edit to that
    code is a new version, never a reuse of weights the code of today would not make."""
    inputs = registry.input_versions(request.training_set)
    return registry.version_id(request.settings, inputs, runtime, training_code.digest())


def train_version(
    store: Store, request: TrainingRequest, mapper: Mapper, log: Log, before_record: Callable[[], None] = lambda: None
) -> TrainedVersion:
    """Reuse the stored version this request names on this runtime, or train, export and store it.
    `before_record` runs right before the record is stored and may refuse (a step that lost its partition)."""
    # torch here, not at the top: the requests are built in processes that never train.
    import torch

    from geo_assets.ml.data import ChipBatches, ChipSampler
    from geo_assets.ml.export import EXPORTS
    from geo_assets.ml.train import TrainConfig, train_chips

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
    config = TrainConfig(
        **{f.name: settings[f.name] for f in fields(TrainConfig) if f.name != "device"}, device=str(device)
    )
    tiles = SetTiles.of(store, training_set)  # manifests only: no tile read yet
    check_tiles_held("training", config.batch_size, 1, tiles.tile_size)
    identity = Normalisation.identity(bands)
    moments, labelled = survey(tiles, mapper, config.batch_size, identity, len(CLASSES))
    normalisation = moments.normalisation(bands)  # stored with the version, applied at prediction
    log(
        f"training {settings['architecture']} on {len(tiles)} tiles from {len(inputs)} acquisitions ({device}): "
        f"version {version}"
    )
    # Each acquisition is drawn alike; a batch reads only the tiles its chips come from, normalised as a batch.
    sampler = ChipSampler(labelled, config.chip_size, config.chips_per_epoch, seed=config.seed, groups=tiles.groups)
    chips = ChipBatches(
        sampler, partial(tiles.read, normalise=identity), config.batch_size, mapper, normalisation.apply
    )
    result = train_chips(
        chips, len(bands), len(CLASSES), config, progress=lambda e, n, loss: log(f"epoch {e}/{n}: loss {loss:.4f}")
    )
    # Exported into a local folder first: nothing is written under the version's prefix before
    # `before_record` lets this step publish, so a step that lost its partition (an orphan whose run was
    # marked failed) never rewrites the files of the same version another run has published since.
    staged = Path(tempfile.mkdtemp(prefix="geo-assets-export-"))
    try:
        files = {}  # each file's size and sha256, checked wherever it is loaded (geo.integrity)
        for file, export in EXPORTS.items():  # model.pt2 (torch) and model.onnx (ONNX Runtime)
            export(result.model, str(staged / file), len(bands))
            files[file] = file_record(str(staged / file))
        record = _record(request, version, normalisation, inputs, runtime, code, prefix, files, result)
        before_record()
        for file in EXPORTS:
            with store.writing(f"{prefix}/{file}") as tmp:
                shutil.copyfile(staged / file, tmp)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    store.write_json(record_key, record)  # written last: a version exists once its record does
    return TrainedVersion(record, reused=False)


def _record(
    request: TrainingRequest,
    version: str,
    normalisation: Normalisation,
    inputs: dict,
    runtime: dict,
    code: dict,
    prefix: str,
    files: dict,
    result,
) -> dict:
    """A trained version's model.json."""
    settings, training_set = request.settings, request.training_set
    bands = training_set["bands"]
    return {
        "name": request.model,
        "version": version,
        "created_at": datetime.datetime.now(datetime.UTC).isoformat(),
        "config": settings,
        "bands": bands,
        "normalisation": normalisation.to_json(),
        "classes": list(CLASSES),
        "inputs": inputs,
        "training_set": [
            {k: i[k] for k in ("region", "date", "footprint", "ground") if k in i} for i in training_set["items"]
        ],
        "runtime": runtime,
        "training_code": code,
        "weights": f"{prefix}/{registry.WEIGHTS_FILE}",
        "files": files,
        "loss_curve": [round(x, 6) for x in result.loss_curve],
        "train_seconds": round(result.seconds, 2),
        "device": result.device,
    }
