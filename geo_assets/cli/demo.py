"""The demo: materialise the whole asset graph on the embedded default, then summarise it.

Each (stage, partition) is one Dagster run recorded in the instance, so `dagster dev` shows the
same history afterwards.
"""

import time
from collections import defaultdict
from typing import Any

import dagster as dg
from rich.console import Console
from rich.table import Table

from geo_assets.config import DEFAULT_MODEL
from geo_assets.definitions import defs
from geo_assets.geo.regions import init_catalogue
from geo_assets.ml import registry
from geo_assets.partitions import region_date_key
from resources.profiles import resource_defs
from resources.storage import dims_path, manifest_key

TRAIN = ["synth-train-a", "synth-train-b"]
HOLDOUT = ["synth-holdout"]
LABELLED = TRAIN + HOLDOUT + ["landsat-sample"]
IMAGERY = TRAIN + HOLDOUT + ["s2-sample", "landsat-sample"]
ALL_BANDS = ["blue", "green", "red", "nir", "swir1", "swir2"]  # synthetic scenes and the Sentinel-2 sample
RGB = ["blue", "green", "red"]  # all the Landsat sample has
# The Landsat sample's model: trained on the synthetic scenes and three of its four polygons (RGB, the
# bands both have), scored in its region_report on the polygon held out whole ("developed").
RGB_MODEL = "landcover-rgb"
PREDICT = [(DEFAULT_MODEL, "synth-holdout"), (DEFAULT_MODEL, "s2-sample"), (RGB_MODEL, "landsat-sample")]
REAL = {"s2-sample": DEFAULT_MODEL, "landsat-sample": RGB_MODEL}


def _version(store, model: str) -> str:
    return store.read_json(manifest_key("trained_model", model))["version"]


def plan(catalogue, quick: bool) -> list[tuple[str, str, Any, str]]:
    """(job, partition key, run config (or a function of the store giving it), what) for every run, in order."""
    dates = {r: catalogue.get(r).dates[:1] if quick else catalogue.get(r).dates for r in IMAGERY}
    epochs = {"epochs": 3, "chips_per_epoch": 128} if quick else {}
    runs: list[tuple[str, str, Any, str]] = []  # a partition key is a str (a region|date one too)
    for r in IMAGERY:
        bands = {"imagery_tiles": {"config": {"bands": RGB if r == "landsat-sample" else ALL_BANDS}}}
        runs += [("imagery_job", region_date_key(r, d), bands, "imagery_tiles") for d in dates[r]]
    runs += [("labels_job", r, {}, "labels") for r in LABELLED]
    for model, regions in ((DEFAULT_MODEL, TRAIN), (RGB_MODEL, TRAIN + ["landsat-sample"])):
        runs.append(
            (
                "training_job",
                model,
                {
                    "training_set": {"config": {"regions": regions}},
                    "evaluation_set": {"config": {"regions": HOLDOUT}},
                    "trained_model": {"config": epochs},
                },
                "training_set + evaluation_set + trained_model + model_evaluation",
            )
        )
    for model, r in PREDICT:
        # The version just trained, gated or not: the demo shows what it made.
        def ops(store, model=model):
            return {"predictions": {"config": {"model": model, "version": _version(store, model)}}}

        runs += [("prediction_job", region_date_key(r, d), ops, "predictions + region_report") for d in dates[r]]
    return runs


def _progress_logger(console: Console) -> dg.LoggerDefinition:
    """Asset log messages as short indented lines, instead of Dagster's full event records."""

    @dg.logger
    def progress(_init_context):
        import logging

        class Handler(logging.Handler):
            def emit(self, record):
                message = getattr(record, "dagster_meta", {}).get("orig_message") or record.getMessage()
                style = "red" if record.levelno >= logging.ERROR else "dim"
                console.print(f"    [{style}]{message}[/{style}]", highlight=False)

        log = logging.getLogger("geo-assets-demo")
        log.handlers = [Handler()]
        log.setLevel(logging.INFO)
        log.propagate = False
        return log

    return progress


def run_demo(instance: dg.DagsterInstance, quick: bool = False) -> int:
    from geo_assets.cli.commands import register

    console = Console(width=None if Console().is_terminal else 140)
    loggers = {"progress": _progress_logger(console)}
    store = resource_defs()["storage"].store()
    catalogue = init_catalogue(store)  # as `geo-assets init`: the store's catalogue exists from now on
    register(instance, regions=catalogue.names(), models=[DEFAULT_MODEL, RGB_MODEL])
    runs = plan(catalogue, quick)
    console.rule(f"geo-assets demo: {len(runs)} runs, storage {store.root}")
    spent: dict[str, float] = defaultdict(float)
    partitions: dict[str, list[str]] = defaultdict(list)
    started = time.perf_counter()
    for i, (job, key, ops, what) in enumerate(runs, 1):
        console.print(f"[bold][{i}/{len(runs)}][/bold] {what} [cyan]{key}[/cyan] ...")
        t0 = time.perf_counter()
        ops = ops(store) if callable(ops) else ops
        result = (
            defs.resolve_job_def(job)
            .with_logger_defs(loggers)
            .execute_in_process(
                run_config={"ops": ops, "loggers": {"progress": {}}},
                instance=instance,
                partition_key=key,
                tags={"geo-assets/launched-by": "demo"},
                raise_on_error=False,
            )
        )
        seconds = time.perf_counter() - t0
        if not result.success and key == RGB_MODEL and _gate_failed(result):
            # The RGB model is judged on the synthetic hold-out like any model; the demo still shows it.
            console.print(f"    [yellow]{RGB_MODEL} did not pass the quality gate; predicting with it anyway[/yellow]")
        elif not result.success:
            console.print(f"[red]run {result.run_id} failed[/red]: {failure_message(result)}")
            return 1
        for step in instance.get_run_step_stats(result.run_id):
            spent[step.step_key] += (step.end_time or 0) - (step.start_time or 0)
            partitions[step.step_key].append(str(key))
        console.print(f"    done in {seconds:.1f} s (run {result.run_id[:8]})")
    _summary(console, store, spent, partitions, catalogue, quick)
    console.print(
        f"total {time.perf_counter() - started:.0f} s. Browse it: DAGSTER_HOME={instance.root_directory} dagster dev"
    )
    return 0


def _gate_failed(result) -> bool:
    """The run failed only because a blocking asset check (the quality gate) did not pass."""
    return "DagsterAssetCheckFailedError" in failure_message(result) or any(
        not c.passed for c in result.get_asset_check_evaluations()
    )


def failure_message(result) -> str:
    """The user's exception message behind a failed step, without Dagster's wrapper."""
    for event in result.all_events:
        if event.is_step_failure:
            error = event.event_specific_data.error
            while error.cause is not None:  # the user's exception, not Dagster's wrapper
                error = error.cause
            return error.message.strip()
    return "see the run's logs"


def _summary(console: Console, store, spent: dict, partitions: dict, catalogue=None, quick: bool = False) -> None:
    table = Table(title="Materialised assets")
    for col in ("asset", "partitions", "time (s)", "outputs"):
        table.add_column(col)
    outputs = {
        "imagery_tiles": "imagery/",
        "labels": "labels/",
        "training_set": "manifests/training_set/",
        "evaluation_set": "manifests/evaluation_set/",
        "trained_model": f"models/{DEFAULT_MODEL}/",
        "model_evaluation": f"models/{DEFAULT_MODEL}/",
        "predictions": f"predictions/{DEFAULT_MODEL}/",
        "region_report": f"reports/{DEFAULT_MODEL}/",
    }
    for asset, where in outputs.items():
        keys = partitions.get(asset, [])
        table.add_row(asset, ", ".join(keys), f"{spent.get(asset, 0):.1f}", store.uri(where.rstrip("/")))
    console.print(table)
    evaluation = store.read_json(f"manifests/model_evaluation/{DEFAULT_MODEL}.json")
    scores = Table(
        title=f"Held-out scores of {DEFAULT_MODEL} {evaluation['version']} on {', '.join(evaluation['regions'])}"
    )
    for col in ("class", "IoU", "F1", "pixels"):
        scores.add_column(col)
    for name, s in evaluation["per_class"].items():
        scores.add_row(name, _fmt(s["iou"]), _fmt(s["f1"]), str(s["support"]))
    scores.add_row(
        "[bold]mean[/bold]",
        f"[bold]{_fmt(evaluation['miou'])}[/bold]",
        _fmt(evaluation["mean_f1"]),
        _gate(store, DEFAULT_MODEL, evaluation),
    )
    console.print(scores)
    rgb = store.read_json(f"manifests/model_evaluation/{RGB_MODEL}.json")
    console.print(
        f"{RGB_MODEL} {rgb['version']} (bands {', '.join(RGB)}; synthetic scenes + Landsat polygons): "
        f"mIoU {_fmt(rgb['miou'])} on {', '.join(rgb['regions'])}, {_gate(store, RGB_MODEL, rgb)}",
        highlight=False,
    )
    if catalogue is not None:
        _real_samples(console, store, catalogue, quick)


def _gate(store, model: str, evaluation: dict) -> str:
    """The gate as it decides serving: a score counts only on the model's registered evaluation set."""
    verdict = "passed" if evaluation["passed"] else "FAILED"
    if not registry.on_set(evaluation, registry.registered_set(store, model)):
        verdict += ", but not on the registered evaluation set: it does not count"
    return f"gate {verdict} (min {evaluation['min_miou']})"


def _real_samples(console: Console, store, catalogue, quick: bool) -> None:
    """Each real sample: the model's class shares beside the spectral-index reference, and held-out polygons."""
    table = Table(title="Real samples: class shares inside the footprint, beside a spectral-index reference")
    for col in (
        "region",
        "model",
        "",
        "water",
        "vegetation",
        "built-up",
        "bare-soil",
        "cloud",
        "other",
        "held-out polygons mIoU",
    ):
        table.add_column(col)
    rules, held_out = [], []
    for region, model in REAL.items():
        version = _version(store, model)
        for date in catalogue.get(region).dates[:1] if quick else catalogue.get(region).dates:
            report = store.read_json(only_output(store, "region_report", model, version, region, date))
            ref = report["index_reference"]["shares"]
            holdout = report.get("holdout")
            table.add_row(
                region,
                f"{model} {version}",
                "model",
                *(_pct(report["shares"][c]) for c in ("water", "vegetation", "built-up", "bare-soil", "cloud")),
                "",
                _fmt(holdout["miou"]) + f" ({holdout['pixels']} px)" if holdout else "n/a",
            )
            table.add_row(
                "",
                "",
                "index reference",
                _pct(ref.get("water")),
                _pct(ref.get("vegetation")),
                "",
                _pct(ref.get("bare-soil")),
                "",
                _pct(ref.get("other")),
                "",
            )
            rules.append(f"{region}: {report['index_reference']['rules']}")
            if holdout:
                held_out.append(_held_out_note(region, holdout))
    console.print(table)
    for line in rules:
        console.print(f"  index reference, {line}", highlight=False)
    for line in held_out:
        console.print(line, highlight=False)


def _held_out_note(region: str, holdout: dict) -> str:
    """What the held-out score is over, and what it does and does not show."""
    classes = ", ".join(f"{c} {s['support']} px" for c, s in holdout["per_class"].items() if s["support"])
    return (
        f"  held out on {region}: whole polygons apart from every tile with training labels (the input "
        f"normalisation is fitted on every tile read, theirs included), {holdout['pixels']} labelled px "
        f"({classes}); mIoU {_fmt(holdout['miou'])}. It shows whether the model finds these classes on real "
        f"ground it never learnt from; over so few pixels and polygons it is a coarse check, not a land-cover "
        f"accuracy, and it says nothing of the classes it does not hold"
    )


def only_output(store, asset: str, model: str, version: str, region: str, date: str) -> str:
    """The key of the one output (one imagery variant, one margin) a version has of a partition, as the demo makes."""
    folder = f"manifests/{asset}/{model}/{version}/{dims_path({'region': region, 'date': date})}"
    (key,) = store.list(folder)
    return key


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.1f} %"


def _fmt(x) -> str:
    return "n/a" if x is None else f"{x:.3f}"
