"""trained_model and model_evaluation: immutable model versions and the quality gate."""


import datetime
import time

import dagster as dg
import numpy as np

from geo_assets.assets.common import catalogue, digest, imagery_dates, imagery_manifest, labels_manifest, output, tag_run
from geo_assets.checks import QUALITY_GATE
from geo_assets.config import EvaluationConfig, TrainingConfig
from geo_assets.geo.landcover import CLASSES, IGNORE
from geo_assets.ml import registry
from geo_assets.ml.device import select_device
from geo_assets.ml.metrics import confusion_matrix, scores
from geo_assets.ml.pairs import load_pairs
from geo_assets.ml.predict import export_model, load_model, predict_batch
from geo_assets.ml.train import TrainConfig, train
from geo_assets.partitions import models_partitions, validate_model_name
from resources.compute import LocalPoolCompute
from resources.storage import StorageResource

ALL = dg.AllPartitionMapping()


def _inputs(store, regions: list[str], dates: list[str]) -> list[tuple[dict, dict]]:
    """(imagery, labels) manifests for each region and date; every date with imagery when none given."""
    cat = catalogue(store)
    pairs = []
    for region in regions:
        cat.get(region)
        labels = labels_manifest(store, region)
        region_dates = dates or imagery_dates(store, region)
        if not region_dates:
            raise FileNotFoundError(f"region {region!r} has no imagery_tiles yet: materialise some dates first")
        pairs.extend((imagery_manifest(store, region, d), labels) for d in region_dates)
    bands = {tuple(i["bands"]) for i, _ in pairs}
    if len(bands) != 1:
        raise ValueError(f"the selected imagery mixes band sets {sorted(bands)}; use one band set")
    return pairs


def _hyperparameters(raw: dict[str, float]) -> dict:
    # Run config carries numbers as floats; whole numbers are layer sizes and counts.
    return {k: int(v) if float(v).is_integer() else v for k, v in raw.items()}


@dg.asset(
    partitions_def=models_partitions,
    group_name="models",
    kinds={"pytorch"},
    deps=[dg.AssetDep("imagery_tiles", partition_mapping=ALL), dg.AssetDep("labels", partition_mapping=ALL)],
)
def trained_model(
    context: dg.AssetExecutionContext, config: TrainingConfig, storage: StorageResource, compute: LocalPoolCompute
) -> dg.Output[dict]:
    """Train the configured architecture on the training regions; store an immutable, exported version."""
    name = validate_model_name(context.partition_key)
    store = storage.store()
    pairs = _inputs(store, config.regions, config.dates)
    bands = pairs[0][0]["bands"]
    hyper = _hyperparameters(config.hyperparameters)
    settings = {**config.model_dump(), "hyperparameters": hyper}
    inputs = {f"{i['region']}/{i['date']}": digest(i) + digest(l) for i, l in pairs}
    version = registry.version_id(settings, inputs)
    prefix = registry.model_prefix(name, version)
    tag_run(context, model=name, model_version=version, regions=",".join(config.regions))

    record_key = f"{prefix}/{registry.MODEL_FILE}"
    if store.exists(record_key):
        context.log.info(f"version {version} of {name} exists (same config and data): reusing it unchanged")
        record = store.read_json(record_key)
    else:
        data = [p for i, l in pairs for p in load_pairs(store, i, l, lambda f, xs: compute.map(f, xs, "training tiles"))]
        context.log.info(f"training {config.architecture} on {len(data)} tiles from {len(pairs)} acquisitions")
        result = train(
            [d[0] for d in data],
            [d[1] for d in data],
            in_channels=len(bands),
            num_classes=len(CLASSES),
            config=TrainConfig(
                architecture=config.architecture, hyperparameters=hyper, epochs=config.epochs,
                batch_size=config.batch_size, learning_rate=config.learning_rate, chip_size=config.chip_size,
                chips_per_epoch=config.chips_per_epoch, seed=config.seed, device=config.device,
            ),
            progress=lambda e, n, loss: context.log.info(f"epoch {e}/{n}: loss {loss:.4f}"),
        )
        with store.writing(f"{prefix}/{registry.WEIGHTS_FILE}") as tmp:
            export_model(result.model, tmp, len(bands))
        record = {
            "name": name,
            "version": version,
            "created_at": datetime.datetime.now(datetime.timezone.utc).isoformat(),
            "config": settings,
            "bands": bands,
            "classes": list(CLASSES),
            "inputs": inputs,
            "weights": f"{prefix}/{registry.WEIGHTS_FILE}",
            "loss_curve": [round(x, 6) for x in result.loss_curve],
            "train_seconds": round(result.seconds, 2),
            "device": result.device,
        }
        store.write_json(record_key, record)  # written last: a version exists once its record does
    curve = "\n".join(f"| {i} | {v:.4f} |" for i, v in enumerate(record["loss_curve"], 1))
    return output(
        record,
        {
            "model": name,
            "version": version,
            "architecture": config.architecture,
            "final_loss": record["loss_curve"][-1],
            "train_seconds": record["train_seconds"],
            "device": record["device"],
            "loss_curve": dg.MetadataValue.md("| epoch | loss |\n|---|---|\n" + curve),
            "location": dg.MetadataValue.path(store.uri(prefix)),
        },
    )


@dg.asset(
    partitions_def=models_partitions,
    group_name="models",
    kinds={"pytorch"},
    check_specs=[QUALITY_GATE],
)
def model_evaluation(
    context: dg.AssetExecutionContext,
    config: EvaluationConfig,
    storage: StorageResource,
    compute: LocalPoolCompute,
    trained_model: dict,
):
    """Per-class IoU/F1 and mIoU on held-out regions; the quality gate blocks models under min_miou."""
    store = storage.store()
    overlap = set(config.regions) & set(trained_model["config"]["regions"])
    if overlap:
        raise ValueError(f"evaluation region(s) {sorted(overlap)} were used for training; evaluate on held-out regions")
    name, version = trained_model["name"], trained_model["version"]
    tag_run(context, model=name, model_version=version)
    device = select_device(config.device)
    with store.local_copy(trained_model["weights"]) as weights:  # torch.export.load needs a local file
        model = load_model(weights, device)
    cm = np.zeros((len(CLASSES), len(CLASSES)), dtype=np.int64)
    started = time.perf_counter()
    for imagery, labels in _inputs(store, config.regions, config.dates):
        if imagery["bands"] != trained_model["bands"]:
            raise ValueError(f"evaluation imagery has bands {imagery['bands']}, the model expects {trained_model['bands']}")
        pairs = load_pairs(store, imagery, labels, lambda f, xs: compute.map(f, xs, "evaluation tiles"))
        for start in range(0, len(pairs), config.batch_size):
            batch = pairs[start : start + config.batch_size]
            pred = predict_batch(model, np.stack([p[0] for p in batch]), device)
            cm += confusion_matrix(pred, np.stack([p[1] for p in batch]), len(CLASSES), ignore=IGNORE)
    result = scores(cm, list(CLASSES))
    passed = result["miou"] is not None and result["miou"] >= config.min_miou
    evaluation = {
        "model": name,
        "version": version,
        "regions": config.regions,
        "min_miou": config.min_miou,
        "passed": passed,
        "confusion_matrix": cm.tolist(),
        "seconds": round(time.perf_counter() - started, 2),
        **result,
    }
    store.write_json(f"{registry.model_prefix(name, version)}/{registry.EVALUATION_FILE}", evaluation)
    table = "\n".join(
        f"| {c} | {_fmt(s['iou'])} | {_fmt(s['f1'])} | {s['support']} |" for c, s in result["per_class"].items()
    )
    yield output(
        evaluation,
        {
            "model": name,
            "version": version,
            "miou": result["miou"],
            "passed_gate": passed,
            "scores": dg.MetadataValue.md("| class | IoU | F1 | pixels |\n|---|---|---|---|\n" + table),
        },
    )
    yield dg.AssetCheckResult(
        check_name=QUALITY_GATE.name,
        passed=passed,
        metadata={"miou": result["miou"], "min_miou": config.min_miou, "version": version},
        description=f"mIoU {_fmt(result['miou'])} on {', '.join(config.regions)} (threshold {config.min_miou})",
    )


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"
