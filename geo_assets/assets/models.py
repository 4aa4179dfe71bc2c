"""Training and evaluation sets, immutable model versions and the quality gate."""

import datetime
import time
from functools import partial

import dagster as dg

from geo_assets.assets.common import acquisition_ground, dataset, dataset_metadata, input_versions, output, tag_run
from geo_assets.assets.manifest_types import DatasetManifest
from geo_assets.assets.placement import gpu_pool, op_tags
from geo_assets.checks import QUALITY_GATE
from geo_assets.config import EvaluationConfig, EvaluationSetConfig, TrainingConfig, TrainingSetConfig
from geo_assets.geo.ground import format_area, shared_area, tiles_on
from geo_assets.geo.landcover import CLASSES
from geo_assets.geo.manifests import DatasetItem
from geo_assets.geo.store import ObjectNotFoundError
from geo_assets.ml import registry
from geo_assets.ml.device import select_device
from geo_assets.ml.evaluation import evaluate
from geo_assets.ml.metrics import scores
from geo_assets.ml.versions import TrainingRequest
from geo_assets.partitions import models_partitions, partition_key, validate_model_name
from resources import leases
from resources.compute import TileCompute
from resources.gate import ModelGate
from resources.storage import StorageResource
from resources.training import TrainingResource

ALL = dg.AllPartitionMapping()
# The tags of runs that automation launched: a sensor's, a schedule's, an automation condition's.
AUTOMATION_TAGS = ("dagster/sensor_name", "dagster/schedule_name", "dagster/from_automation_condition")
CODE_VERSION = "2"  # bump when a change to this module changes what these assets store


def _register_evaluation_set(context: dg.AssetExecutionContext, store, model: str, manifest: DatasetManifest) -> dict:
    """The set a model is judged on changes only on purpose: the first selection for a model registers it
    (unless a sensor, a schedule or an automation condition launched the run: automation never defines a set), and later only
    `geo-assets model evaluation-set` changes it. No run config can, or a run could choose its own judge."""
    pairs = registry.acquisitions(manifest)
    registered = registry.registered_set(store, model)
    this = registry.judged_set_id(manifest, registered)
    automated = next(
        (f"{t.split('/')[1]} {context.run.tags[t]}" for t in AUTOMATION_TAGS if t in context.run.tags), None
    )
    if registered is None and automated is None:
        leases.check_held(context, store, model)  # an orphaned step registers nothing
        registered, changed = registry.register_set(
            store,
            model,
            pairs,
            by=f"run {context.run.run_id} (the model had none)",
            variants=registry.set_variants(manifest),
        )
        if changed:
            context.log.info(
                f"registered the evaluation set of {model}: revision {registered['revision']}, "
                f"{len(pairs)} acquisitions, set {this} (the model had none)"
            )
    elif registered is None:
        context.log.warning(
            f"evaluation_set[{model}] was selected by {automated}; the model has no registered "
            f"evaluation set, and automation never registers one: run `geo-assets model evaluation-set {model}`"
        )
        return {"set_id": this, "registered_set": "none", "is_registered_set": False}
    elif registered["set_id"] != this:
        context.log.warning(
            f"evaluation_set[{model}] selects {len(pairs)} acquisitions (set {this}), not the model's registered "
            f"evaluation set (revision {registered['revision']}, {len(registered['acquisitions'])} acquisitions, set "
            f"{registered['set_id']}): evaluations on it are recorded but make no version serve. To change the "
            f"registered set, run `geo-assets model evaluation-set {model}`"
        )
    return {
        "set_id": this,
        "registered_set": registered["set_id"],
        "registered_revision": registered["revision"],
        "is_registered_set": registered["set_id"] == this,
        "registered_acquisitions": ", ".join("/".join(a) for a in registered["acquisitions"])[:4000],
    }


def _selection(store, model: str, config) -> tuple[list[str], list[str], list[str], list[str] | None]:
    """Regions, dates, acquisitions and bands of a set. A model added with `geo-assets model add` has its
    sets and bands in its definition: config left at its defaults selects them, config that names others
    is refused, naming the definition (the input_changes sensor's refresh of the set's own acquisitions passes)."""
    spec = registry.definition(store, model)
    if spec is None:
        return config.regions, config.dates, config.acquisitions, None
    part = "evaluation_set" if isinstance(config, EvaluationSetConfig) else "training_set"
    defined = spec[part]
    if config.acquisitions:
        outside = sorted({a.split("/")[0] for a in config.acquisitions} - set(defined["regions"]))
        if not outside:
            return config.regions, [], config.acquisitions, spec["bands"]
    default = type(config).model_fields["regions"].default
    chosen = (list(config.regions), list(config.dates))
    if not config.acquisitions and chosen in ((default, []), (defined["regions"], defined["dates"])):
        # An evaluation set is fixed when the model is added: its acquisitions then, as the gate's set is.
        return defined["regions"], defined["dates"], defined.get("acquisitions", []), spec["bands"]
    raise ValueError(
        f"model {model} was added with its {part}: regions {', '.join(defined['regions'])}, dates "
        f"{', '.join(defined['dates']) or 'every date with imagery'} (models/{model}/{registry.DEFINITION_FILE}); "
        f"this run's config selects {', '.join(config.acquisitions) or ', '.join(config.regions)}: leave the "
        f"config out, or add another model"
    )


def _evaluation_dataset(
    store, model: str, regions: list[str], dates: list[str], acquisitions: list[str], bands: list[str] | None
) -> DatasetManifest:
    """The selected evaluation set. The model's registered set reads what it was registered on (its
    imagery variants and labels' cuts), or is refused naming what changed: it never switches by itself."""
    registered = registry.registered_set(store, model) or {}  # none registered: no pins
    pins = registered.get("variants")
    if pins and sorted(a.split("/") for a in acquisitions) == registered["acquisitions"]:
        return dataset(store, regions, dates, acquisitions, pinned=pins, bands=bands)  # input_changes' request
    selected = dataset(store, regions, dates, acquisitions, bands=bands)
    if (
        pins
        and registry.acquisitions(selected) == registered["acquisitions"]
        and registry.set_variants(selected) != pins
    ):
        return dataset(store, regions, dates, list(pins), pinned=pins, bands=bands)
    return selected


def _dataset(context: dg.AssetExecutionContext, config, store, model: str) -> dg.Output[DatasetManifest]:
    """The set's manifest (an evaluation set's registered one, see above) with its metadata."""
    regions, dates, acquisitions, bands = _selection(store, model, config)
    if isinstance(config, EvaluationSetConfig):
        manifest = _evaluation_dataset(store, model, regions, dates, acquisitions, bands)
    else:
        manifest = dataset(store, regions, dates, acquisitions, bands=bands)
    manifest["model"] = model
    tag_run(context, model=model, regions=",".join(regions))
    metadata = dataset_metadata(manifest)
    if isinstance(config, EvaluationSetConfig):
        metadata.update(_register_evaluation_set(context, store, model, manifest))
    return output(manifest, metadata)


def _dataset_asset(name: str, config_type: type, role: str):
    """training_set / evaluation_set: the exact acquisitions (and their data versions) a model version
    is trained or judged on. Dagster draws the edges at asset level (its partition lineage cannot follow
    run config); the partition-level lineage is this manifest, and the `input_changes` sensor reports a
    new data version here when one of its acquisitions changes, which marks the models built on it stale."""

    @dg.asset(
        name=name,
        partitions_def=models_partitions,
        group_name="models",
        kinds={"python"},
        code_version=CODE_VERSION,
        op_tags=op_tags(name),
        deps=[dg.AssetDep("imagery_tiles", partition_mapping=ALL), dg.AssetDep("labels", partition_mapping=ALL)],
        description=f"The acquisitions a model is {role} on, with the data version of each.",
    )
    def _asset(
        context: dg.AssetExecutionContext,
        config: config_type,  # type: ignore[valid-type]  # the factory's config class: Dagster reads it from here
        storage: StorageResource,
    ) -> dg.Output[DatasetManifest]:
        model = partition_key(context, validate_model_name)
        store = storage.store()
        with leases.writing(context, store, [model]):  # one writer per model partition
            return _dataset(context, config, store, model)

    return _asset


training_set = _dataset_asset("training_set", TrainingSetConfig, "trained")
evaluation_set = _dataset_asset("evaluation_set", EvaluationSetConfig, "evaluated")


def _hyperparameters(raw: dict[str, float]) -> dict:
    # Run config carries numbers as floats; whole numbers are layer sizes and counts.
    return {k: int(v) if float(v).is_integer() else v for k, v in raw.items()}


def _held_out(store, training: list[DatasetItem], evaluation: list[DatasetItem]) -> None:
    """Held out means held out on the ground: no tile an evaluation reads may share ground with a tile
    the model was trained on (the tiles' footprints, not the regions' boxes: edge tiles overhang them)."""

    def ground(item):  # records made before grounds were kept: the acquisition's tiles as stored now
        return item.get("ground") or acquisition_ground(store, item)

    trained_on = [(t["region"], t["date"], ground(t)) for t in training]
    for e in evaluation:
        seen = ground(e)
        for region, date, trained in trained_on:
            shared = shared_area(trained, seen)
            if shared > 0:
                tiles = store.read_json(e["imagery"])["tiles"]
                on = tiles_on(trained, seen["crs"], [(t["key"], t["bounds"]) for t in tiles])
                raise ValueError(
                    f"evaluation acquisition {e['region']}/{e['date']} shares {format_area(shared)} of ground with "
                    f"training acquisition {region}/{date}: {len(on)} of its {len(tiles)} tiles overlap tiles the "
                    f"model was trained on ({', '.join(on[:20])}{', ...' if len(on) > 20 else ''}); evaluate on held-out ground"
                )


def _stored(store, key: str) -> dict | None:
    """An immutable record if it was written before (one read, no exists-then-read round trip)."""
    try:
        return store.read_json(key)
    except ObjectNotFoundError:
        return None


@dg.asset(
    partitions_def=models_partitions,
    group_name="models",
    kinds={"pytorch"},
    code_version=CODE_VERSION,
    pool=gpu_pool("trained_model"),
    op_tags=op_tags("trained_model"),
)
def trained_model(
    context: dg.AssetExecutionContext,
    config: TrainingConfig,
    storage: StorageResource,
    compute: TileCompute,
    training: TrainingResource,
    training_set: DatasetManifest,
) -> dg.Output[dict]:
    """Train the configured architecture on the training set; store an immutable, exported version.
    The `training` resource decides where: in this process or as a remote job (Vertex AI, ECS)."""
    name = partition_key(context, validate_model_name)
    store = storage.store()
    with leases.writing(context, store, [name]):  # one writer per model partition
        return _trained_model(context, config, storage, store, compute, training, training_set, name)


def _architecture(store, name: str, config: TrainingConfig) -> dict:
    """The training settings. A model added with `geo-assets model add` trains the architecture and
    hyperparameters of its definition: config left at their defaults takes them, config naming others is refused."""
    settings = {**config.model_dump(), "hyperparameters": _hyperparameters(config.hyperparameters)}
    spec = registry.definition(store, name)
    if spec is None:
        return settings
    chosen = (settings["architecture"], settings["hyperparameters"])
    defined = (spec["architecture"], spec["hyperparameters"])
    default: tuple[str, dict] = (TrainingConfig.model_fields["architecture"].default, {})
    if chosen not in (default, defined):
        raise ValueError(
            f"model {name} was added as a {defined[0]} with hyperparameters {defined[1]} "
            f"(models/{name}/{registry.DEFINITION_FILE}); this run's config asks for a {chosen[0]} with {chosen[1]}: "
            f"leave architecture and hyperparameters out, or add another model"
        )
    # Checked as run config is, with the definition's values (e.g. chip_size against a unet's depth).
    TrainingConfig(**{**config.model_dump(), "architecture": defined[0], "hyperparameters": defined[1]})
    return {**settings, "architecture": defined[0], "hyperparameters": defined[1]}


def _trained_model(
    context,
    config: TrainingConfig,
    storage: StorageResource,
    store,
    compute: TileCompute,
    training: TrainingResource,
    training_set: DatasetManifest,
    name: str,
) -> dg.Output[dict]:
    settings = _architecture(store, name, config)
    tag_run(context, model=name, regions=",".join(training_set["regions"]))
    request = TrainingRequest(name, settings, training_set)
    # A new version exists once its model.json is stored: only while this step still holds the partition.
    trained, where = training.train(
        context,
        storage,
        request,
        lambda f, xs: compute.map(f, xs, "training tiles"),
        partial(leases.check_held, context, store, name),
    )
    record = trained.record
    tag_run(context, model_version=record["version"])
    if trained.reused:
        context.log.info(
            f"version {record['version']} of {name} exists (same config, data, runtime and training code): reusing it unchanged"
        )
    curve = "\n".join(f"| {i} | {v:.4f} |" for i, v in enumerate(record["loss_curve"], 1))
    return output(
        record,
        {
            "model": name,
            "version": record["version"],
            "architecture": settings["architecture"],
            "final_loss": record["loss_curve"][-1],
            "train_seconds": record["train_seconds"],
            "device": record["device"],
            "torch": record["runtime"]["torch"],
            "loss_curve": dg.MetadataValue.md("| epoch | loss |\n|---|---|\n" + curve),
            "location": dg.MetadataValue.path(store.uri(registry.model_prefix(name, record["version"]))),
            **where,
        },
    )


@dg.asset(
    partitions_def=models_partitions,
    group_name="models",
    kinds={"pytorch"},
    code_version=CODE_VERSION,
    pool="gpu",  # GPU steps take a slot of the deployment's gpu pool
    op_tags=op_tags("model_evaluation"),
    check_specs=[QUALITY_GATE],
)
def model_evaluation(
    context: dg.AssetExecutionContext,
    config: EvaluationConfig,
    storage: StorageResource,
    compute: TileCompute,
    gate: dg.ResourceParam[ModelGate],
    trained_model: dict,
    evaluation_set: DatasetManifest,
):
    """Per-class IoU/F1 and mIoU on held-out ground; the quality gate blocks versions under the deployment's min_miou."""
    store = storage.store()
    with leases.writing(
        context, store, [partition_key(context, validate_model_name)]
    ):  # one writer per model partition
        yield from _model_evaluation(context, config, store, compute, gate, trained_model, evaluation_set)


def _model_evaluation(
    context,
    config: EvaluationConfig,
    store,
    compute: TileCompute,
    gate: ModelGate,
    trained_model: dict,
    evaluation_set: DatasetManifest,
):
    name, version = trained_model["name"], trained_model["version"]
    tag_run(context, model=name, model_version=version)
    if not set(trained_model["bands"]) <= set(evaluation_set["bands"]):
        raise ValueError(
            f"evaluation imagery has bands {evaluation_set['bands']}, the model expects {trained_model['bands']}"
        )
    _held_out(store, trained_model["training_set"], evaluation_set["items"])
    inputs = input_versions(evaluation_set)
    this_set = registry.judged_set_id(evaluation_set, registry.registered_set(store, name))
    evaluation_id = registry.evaluation_id(inputs, gate.min_miou, this_set)
    evaluation_key = registry.evaluation_key(name, version, evaluation_id)
    evaluation = _stored(store, evaluation_key)  # evaluations are immutable: the same set at the same bar is not redone
    if evaluation is not None:
        context.log.info(f"version {version} was already evaluated on this set at min mIoU {gate.min_miou}: reusing it")
    else:
        started = time.perf_counter()
        # Batch by batch, tiles read a batch ahead: memory does not grow with the set (ml.memory).
        cm = evaluate(
            store,
            trained_model,
            evaluation_set,
            lambda f, xs: compute.map(f, xs, "evaluation tiles"),
            select_device(config.device),
            config.batch_size,
        )
        result = scores(cm, list(CLASSES))
        evaluation = {
            "model": name,
            "version": version,
            "evaluation": evaluation_id,
            "evaluated_at": datetime.datetime.now(datetime.UTC).isoformat(),
            "regions": evaluation_set["regions"],
            "inputs": inputs,
            "min_miou": gate.min_miou,
            "evaluation_set": this_set,  # only an evaluation on the model's registered set can make it serve
            "passed": result["miou"] is not None and result["miou"] >= gate.min_miou,
            "confusion_matrix": cm.tolist(),
            "seconds": round(time.perf_counter() - started, 2),
            **result,
        }
        leases.check_held(
            context, store, context.partition_key
        )  # the serving choice reads it: only while this step holds the partition
        store.write_json(evaluation_key, evaluation)
    registered = registry.registered_set(store, name)
    on_registered = registry.on_set(evaluation, registered)
    passed = evaluation["passed"] and on_registered
    if not on_registered:
        context.log.warning(
            f"evaluated on set {this_set}, not the registered evaluation set of {name} "
            f"({registered['set_id'] if registered else 'none'}): recorded, but it makes no version serve"
        )
    serving = registry.serving_state(store, name, gate.min_miou)
    table = "\n".join(
        f"| {c} | {_fmt(s['iou'])} | {_fmt(s['f1'])} | {s['support']} |" for c, s in evaluation["per_class"].items()
    )
    yield output(
        evaluation,
        {
            "model": name,
            "version": version,
            "miou": evaluation["miou"],
            "min_miou": evaluation["min_miou"],
            "passed_gate": passed,
            "evaluation_set": this_set,
            "on_registered_set": on_registered,
            "registered_set": (
                f"revision {registered['revision']}: {registered['set_id']} ("
                + ", ".join("/".join(a) for a in registered["acquisitions"])[:4000]
                + ")"
            )
            if registered
            else "none",
            "serving": serving["serving"] or "none",
            "serving_state": serving["state"],
            "scores": dg.MetadataValue.md("| class | IoU | F1 | pixels |\n|---|---|---|---|\n" + table),
            "location": dg.MetadataValue.path(store.uri(evaluation_key)),
        },
    )
    yield dg.AssetCheckResult(
        check_name=QUALITY_GATE.name,
        passed=passed,
        metadata={"miou": evaluation["miou"], "min_miou": evaluation["min_miou"], "version": version},
        description=f"mIoU {_fmt(evaluation['miou'])} on {', '.join(evaluation['regions'])} (threshold {evaluation['min_miou']})"
        + ("" if on_registered else "; not the registered evaluation set, so it cannot pass"),
    )


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"
