"""The `geo-assets` command: manage regions and run the demo.

geo-assets region list
geo-assets region add NAME --bbox MINX MINY MAXX MAXY --crs EPSG:32631 [--source synthetic] [--labels synthetic]
geo-assets region remove NAME [--delete-outputs]
geo-assets model add NAME --architecture A --bands B [B ...] --training-regions R [R ...] --evaluation-regions R [R ...]
                                    register a model name with what it trains on and is judged on
geo-assets model list NAME          versions, evaluations, the registered evaluation set and which one serves
geo-assets model promote NAME VERSION | --auto
geo-assets model evaluation-set NAME --regions R [R ...] [--dates D ...]   register the set the gate judges on
geo-assets init        register built-in regions and the default model as partitions
geo-assets launch --region R --date D [--model M] [--source S] [--wait]       one run, over GraphQL
geo-assets backfill --region R --from D1 --to D2 [--model M] [--source S] [--wait]   through the daemon
geo-assets train MODEL --regions R [R ...] [--config JSON]   labels, then a new model version, over GraphQL
geo-assets map REGION DATE [--model M] [--version V] [--open]   the link to its map view
geo-assets map-server [--host H] [--port P]   serve the map of the store's outputs (read-only)
geo-assets demo        materialise the whole asset graph on the embedded default
"""

import argparse
import collections
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from geo_assets.cli.graphql import DEFAULT_URL, LaunchError


def _instance():
    """The Dagster instance in $DAGSTER_HOME, or `.dagster_home/` here when it is unset."""
    from dagster import DagsterInstance

    home = Path(os.environ.setdefault("DAGSTER_HOME", str(Path(".dagster_home").resolve())))
    home.mkdir(parents=True, exist_ok=True)
    return DagsterInstance.get()


def _store():
    from resources.profiles import resource_defs

    return resource_defs()["storage"].store()


def _min_miou() -> float:
    from resources.profiles import resource_defs

    return resource_defs()["gate"].min_miou


def register(instance, regions: Sequence[str] = (), models: Sequence[str] = ()) -> None:
    """Add region and model partitions; a name that is no valid slug is refused before any is added."""
    from geo_assets.partitions import MODELS, REGIONS, validate_model_name, validate_region_name

    regions, models = [validate_region_name(r) for r in regions], [validate_model_name(m) for m in models]
    for name, keys in ((REGIONS, regions), (MODELS, models)):
        _add_partitions(instance, name, keys)


def _add_partitions(instance, name: str, keys: Sequence[str]) -> None:
    """Add the keys not there yet. Dagster's add checks, then inserts: the daemon's region sensor may add the same
    key in between (it adds catalogued regions), which fails the insert on the unique key. Then check again."""
    from sqlalchemy.exc import IntegrityError

    for attempt in range(3):
        missing = [k for k in keys if not instance.has_dynamic_partition(name, k)]
        if not missing:
            return
        try:
            instance.add_dynamic_partitions(name, missing)
            return
        except IntegrityError:
            if attempt == 2:
                raise


def cmd_region_list(args) -> int:
    from geo_assets.geo.regions import load_catalogue

    for r in load_catalogue(_store()):
        print(f"{r.name:24} {r.crs:12} {' '.join(f'{v:g}' for v in r.bbox):48} source={r.source} labels={r.labels}")
    return 0


def cmd_region_add(args) -> int:
    from geo_assets.geo.regions import Region, add_region

    region = Region(args.name, tuple(args.bbox), args.crs, args.source, args.labels, tuple(args.date or ()))
    add_region(_store(), region, replace=args.replace)
    register(_instance(), regions=[region.name])
    print(
        f"added region {region.name} ({region.crs} {region.bbox}); partition registered in {os.environ['DAGSTER_HOME']}"
    )
    return 0


def region_outputs(store, name: str) -> list[str]:
    """Every stored key that belongs to region `name`: its tiles, labels, predictions, reports, manifests."""

    # With the temporaries of writes that were killed: nothing else ever removes them.
    def listed(prefix: str) -> list[str]:
        return store.list(prefix, temporaries=True)

    keys = listed(f"imagery/{name}") + listed(f"labels/{name}") + listed(f"manifests/imagery_tiles/region={name}")
    keys += [k for k in [f"manifests/labels/{name}.json"] if store.exists(k)]
    # <top>/<model>/<version>/<region>/...; their manifests: manifests/<asset>/<model>/<version>/region=<region>/...
    for top, part, value in (
        ("predictions", 3, name),
        ("reports", 3, name),
        ("manifests/predictions", 4, f"region={name}"),
        ("manifests/region_report", 4, f"region={name}"),
    ):
        keys += [k for k in listed(top) if k.split("/")[part : part + 1] == [value]]
    return sorted(keys)


def cmd_region_remove(args) -> int:
    from geo_assets.geo.regions import builtin_regions, load_catalogue, save_catalogue
    from geo_assets.partitions import REGIONS

    store = _store()
    catalogue = load_catalogue(store)
    catalogue.get(args.name)  # an unknown name fails here, naming the known ones
    if args.name in builtin_regions():
        raise ValueError(f"region {args.name!r} is built in and cannot be removed")
    outputs = region_outputs(store, args.name)
    catalogue.remove(args.name)
    save_catalogue(store, catalogue)
    instance = _instance()
    if instance.has_dynamic_partition(REGIONS, args.name):
        instance.delete_dynamic_partition(REGIONS, args.name)
    print(f"removed region {args.name} from the catalogue and its partition from {os.environ['DAGSTER_HOME']}")
    if args.delete_outputs:
        for key in outputs:
            store.delete(key)
        print(f"deleted its {len(outputs)} stored objects")
    elif outputs:
        print(
            f"kept its {len(outputs)} stored objects (tiles, labels, predictions, reports, manifests) under "
            f"{store.root}; pass --delete-outputs to delete them"
        )
    return 0


def _known_bands() -> list[str]:
    import typing

    from geo_assets.config import Band

    return [m.value for m in typing.get_args(Band)[0]]


def cmd_model_add(args) -> int:
    """Register a model name with its architecture, bands and its training and evaluation sets: what every
    training_set, evaluation_set and trained_model run of it takes (geo_assets/assets/models.py)."""

    from geo_assets.assets.common import dataset
    from geo_assets.config import EvaluationSetConfig, TrainingConfig, TrainingSetConfig
    from geo_assets.ml import registry
    from geo_assets.ml.options import ARCHITECTURE_NAMES
    from geo_assets.partitions import MODELS, validate_model_name

    name = validate_model_name(args.name)
    hyper: dict[str, float] = {}
    for item in args.hyperparameter or []:
        key, eq, value = item.partition("=")
        try:
            hyper[key.strip()] = float(value)
        except ValueError:
            eq = ""
        if not eq or not key.strip():
            raise ValueError(f"--hyperparameter {item!r}: expected NAME=NUMBER, e.g. depth=3")
    if args.architecture not in ARCHITECTURE_NAMES:
        raise ValueError(f"unknown architecture {args.architecture!r}; accepted: {', '.join(ARCHITECTURE_NAMES)}")
    known = _known_bands()
    unknown = [b for b in args.bands if b not in known]
    if unknown:
        raise ValueError(f"unknown band {unknown[0]!r}; accepted: {', '.join(known)}")
    if len(set(args.bands)) != len(args.bands):
        raise ValueError(f"--bands names a band twice: {' '.join(args.bands)}")
    # The bounds of run config (ConfigError): architecture, hyperparameters and weights; regions and dates.
    TrainingConfig(architecture=args.architecture, hyperparameters=hyper)
    sets = {
        "training_set": TrainingSetConfig(regions=args.training_regions, dates=args.training_dates or []),
        "evaluation_set": EvaluationSetConfig(regions=args.evaluation_regions, dates=args.evaluation_dates or []),
    }
    both = sorted(set(args.training_regions) & set(args.evaluation_regions))
    if both:
        raise ValueError(f"region {both[0]} is in both sets: a model is judged on regions it is not trained on")
    store, instance = _store(), _instance()
    stored = store.list(f"models/{name}")
    if instance.has_dynamic_partition(MODELS, name) or stored:
        raise ValueError(
            f"model name {name!r} is taken: "
            + (f"{len(stored)} objects are stored under models/{name}/" if stored else "it is a model partition")
            + f" (`geo-assets model list {name}`); choose another name"
        )
    # The sets as their runs will select them now: unknown regions, missing imagery or labels, and bands the
    # imagery lacks fail here, naming the acquisition.
    manifests = {part: dataset(store, c.regions, c.dates, bands=args.bands) for part, c in sets.items()}
    evaluation = manifests["evaluation_set"]
    held_out = ["/".join(pair) for pair in registry.acquisitions(evaluation)]  # fixed now, as the gate's set is
    record = registry.add_definition(
        store,
        name,
        {
            "architecture": args.architecture,
            "hyperparameters": {k: int(v) if v.is_integer() else v for k, v in hyper.items()},
            "bands": args.bands,
            "training_set": {"regions": sets["training_set"].regions, "dates": sets["training_set"].dates},
            "evaluation_set": {
                "regions": sets["evaluation_set"].regions,
                "dates": sets["evaluation_set"].dates,
                "acquisitions": held_out,
            },
            "added_by": f"geo-assets model add ({os.environ.get('USER', 'unknown user')})",
        },
    )
    registered, _ = registry.register_set(
        store,
        name,
        registry.acquisitions(evaluation),
        by=record["added_by"],
        variants=registry.set_variants(evaluation),
    )
    register(instance, models=[name])
    print(
        f"added model {name}: {record['architecture']} on {', '.join(args.bands)}; trains on "
        f"{len(manifests['training_set']['items'])} acquisition(s) of {', '.join(args.training_regions)}; "
        f"partition registered in {os.environ['DAGSTER_HOME']}"
    )
    print(_registered_line(registered))
    print(
        f"train and evaluate it: materialise training_set, evaluation_set, trained_model and model_evaluation "
        f"of partition {name} (training_job); their config may be left out"
    )
    return 0


def _definition_line(spec: dict) -> str:
    sets = (
        f"{part.split('_')[0]} on {', '.join(spec[part]['regions'])}"
        + (f" ({', '.join(spec[part]['dates'])})" if spec[part]["dates"] else "")
        for part in ("training_set", "evaluation_set")
    )
    hyper = ", ".join(f"{k}={v}" for k, v in spec["hyperparameters"].items())
    return (
        f"defined: {spec['architecture']}{f' ({hyper})' if hyper else ''}, bands {', '.join(spec['bands'])}; "
        f"{'; '.join(sets)}; added {spec['added_at'][:19]} by {spec['added_by']}"
    )


def cmd_model_list(args) -> int:
    from geo_assets.ml import registry
    from geo_assets.partitions import validate_model_name

    store, min_miou = _store(), _min_miou()
    versions = registry.list_versions(store, validate_model_name(args.name))
    spec = registry.definition(store, args.name)
    if not versions and spec is None:
        raise LookupError(f"model {args.name!r} has no trained versions")
    state = registry.serving_state(store, args.name, min_miou, versions)
    serving, registered = state["serving"], state["registered_set"]
    print(f"model {args.name}: gate min mIoU {min_miou}; serving: {serving or 'none'} ({state['state']})")
    if spec is not None:
        print(_definition_line(spec))
    if state["refused"]:
        print(f"  {state['refused']}")
    print(_registered_line(registered))
    for r in versions:
        evals = (
            ", ".join(
                f"mIoU {e['miou']:.3f} on {'+'.join(e['regions'])} at {e['min_miou']} {'passed' if e['passed'] else 'failed'}"
                + (
                    ""
                    if registry.on_set(e, registered)
                    else f" (other set {e.get('evaluation_set', 'unrecorded')}: does not count)"
                )
                for e in r["evaluations"]
                if e["miou"] is not None
            )
            or "not evaluated"
        )
        mark = "*" if r["version"] == serving else "!" if r["version"] == state["pinned"] else " "
        print(
            f"{mark} {r['version']}  {r['created_at'][:19]}  {r['config']['architecture']:5} {r['runtime']['device']:4}  {evals}"
        )
    return 0


def _registered_line(registered: dict | None) -> str:
    if registered is None:
        return "evaluation set: none registered (materialise evaluation_set or run `geo-assets model evaluation-set`)"
    pairs = registered["acquisitions"]
    shown = ", ".join("/".join(a) for a in pairs[:10]) + (f", ... ({len(pairs)} in all)" if len(pairs) > 10 else "")
    return (
        f"evaluation set: {registered['set_id']} revision {registered['revision']}, {len(pairs)} acquisition(s): "
        f"{shown}; changed {registered['changed_at'][:19]} by {registered['changed_by']}"
    )


def cmd_model_evaluation_set(args) -> int:
    """Register the evaluation set a model's gate is judged on: the acquisitions present now, fixed from then on."""
    from geo_assets.assets.common import dataset
    from geo_assets.config import EvaluationSetConfig
    from geo_assets.ml import registry
    from geo_assets.partitions import validate_model_name

    name = validate_model_name(args.name)
    config = EvaluationSetConfig(regions=args.regions, dates=args.dates or [])  # the run config's checks and bounds
    store = _store()
    if registry.definition(store, name) is not None:  # its evaluation_set runs select the definition's set
        raise ValueError(
            f"model {name} was added with its evaluation set (models/{name}/{registry.DEFINITION_FILE}); "
            "add another model to judge on another set"
        )
    manifest = dataset(store, config.regions, config.dates)  # an unknown region or missing imagery fails here
    record, changed = registry.register_set(
        store,
        name,
        registry.acquisitions(manifest),
        by=f"geo-assets model evaluation-set ({os.environ.get('USER', 'unknown user')})",
        variants=registry.set_variants(manifest),
    )
    print(("registered" if changed else "unchanged:") + f" model {name} " + _registered_line(record))
    if changed:
        print(
            f"materialise evaluation_set[{name}] and model_evaluation[{name}] on it: only evaluations on this set "
            "make a version serve"
        )
    return 0


def cmd_model_promote(args) -> int:
    from geo_assets.ml import registry
    from geo_assets.partitions import validate_model_name

    store, name = _store(), validate_model_name(args.name)
    if args.auto:
        removed = registry.unpin(store, name)
        now = registry.serving_version(store, name, _min_miou())["version"]
        print(f"{'removed the promotion; ' if removed else ''}model {name} serves its newest gated version: {now}")
    else:
        if not args.version:
            raise ValueError("name a VERSION to promote, or pass --auto")
        registry.promote(store, name, args.version, _min_miou())
        print(f"model {name} now serves version {args.version}")
    return 0


def cmd_init(args) -> int:
    from geo_assets.config import DEFAULT_MODEL
    from geo_assets.geo.regions import init_catalogue

    names = init_catalogue(_store()).names()  # creates the store's catalogue if it has none
    register(_instance(), regions=names, models=[DEFAULT_MODEL])
    print(f"registered regions: {', '.join(names)}; model: {DEFAULT_MODEL}")
    return 0


def _request(args, dates: list[str]):
    """The launch's partitions, run config and tags, refused here when a partition cannot succeed."""
    from geo_assets.cli.launches import plan

    assets = tuple(a.strip() for a in args.select.split(",") if a.strip())
    return plan(
        _store(),
        args.region,
        dates,
        min_miou=_min_miou(),
        source=args.source,
        model=args.model,
        version=args.version,
        assets=assets,
    )


def _print_event(event) -> None:
    print(f"  {event.kind:22} {event.step or '':16} {event.message}", flush=True)


def _ready_client(url: str):
    """A client of the webserver at `url`, once it reads its database and serves the code location;
    its warnings (a silent daemon) printed."""
    from geo_assets.cli.graphql import DagsterClient

    client = DagsterClient(url, say=lambda line: print(f"geo-assets: {line}", flush=True))
    for warning in client.ready():
        print(f"geo-assets: warning: {warning}", file=sys.stderr, flush=True)
    return client


def cmd_launch(args) -> int:
    from geo_assets.cli.graphql import ui_url

    request = _request(args, [args.date])
    client = _ready_client(args.url)
    tags = {**request.tags, "geo-assets/trigger": "cli-launch"}
    run_id = client.launch_run(list(request.assets), request.partitions[0], request.run_config, tags)
    print(
        f"launched run {run_id} ({', '.join(request.assets)} of {request.partitions[0]}): {ui_url(args.url, '/runs/' + run_id)}",
        flush=True,
    )
    if not args.wait:
        return 0
    return 0 if _follow(client, run_id) == "SUCCESS" else 1


def _follow(client, run_id: str) -> str | None:
    """Print a run's events until it ends, then its status; the status."""
    status = None
    for item in client.follow_run(run_id):
        if isinstance(item, str):
            status = item
        else:
            _print_event(item)
    print(f"run {run_id}: {status}", flush=True)
    return status


def cmd_train(args) -> int:
    """Train a new version of a model on a running webserver, as the UI's launchpad would: one run of
    `labels` per region, then one of `training_set` and `trained_model`, each followed to its end."""
    import json

    from geo_assets.cli.graphql import ui_url
    from geo_assets.config import ConfigError, TrainingConfig, TrainingSetConfig
    from geo_assets.geo.messages import shown
    from geo_assets.partitions import validate_model_name

    model = validate_model_name(args.model)
    try:
        config = json.loads(args.config)
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"--config is not JSON ({exc}): give trained_model's config, e.g. '{{\"epochs\": 3}}'"
        ) from None
    if not isinstance(config, dict):
        raise ValueError("--config must be a JSON object: trained_model's config")
    unknown = sorted(set(config) - set(TrainingConfig.model_fields))  # Dagster's schema refuses them, later
    if unknown:
        raise ValueError(
            f"--config: unknown field(s) {', '.join(map(shown, unknown))}; trained_model takes "
            + ", ".join(TrainingConfig.model_fields)
        )
    # Refused here, before the labels runs it would follow; a value Dagster reads from the environment
    # ({"env": "VAR"}, as the launchpad allows) is the run's to check.
    given = {
        k: v for k, v in config.items() if k == "hyperparameters" or not (isinstance(v, dict) and set(v) == {"env"})
    }
    try:
        TrainingConfig(**given)
    except ConfigError as exc:
        raise ValueError(f"--config: {exc}") from None
    catalogue = _load_catalogue()
    regions = [catalogue.get(r).name for r in args.regions]  # an unknown region fails here, naming the known ones
    TrainingSetConfig(regions=regions)  # and too many of them (ConfigError)
    client = _ready_client(args.url)
    trigger = {"geo-assets/trigger": "cli-train"}
    launches: list[tuple[list[str], str, dict]] = [(["labels"], r, {}) for r in regions]
    ops = {"training_set": {"config": {"regions": regions}}, "trained_model": {"config": config}}
    launches.append((["training_set", "trained_model"], model, {"ops": ops}))
    for assets, key, run_config in launches:
        run_id = client.launch_assets(assets, run_config, {**trigger, "dagster/partition": key})
        print(
            f"launched run {run_id} ({', '.join(assets)} of {key}): {ui_url(args.url, '/runs/' + run_id)}", flush=True
        )
        if _follow(client, run_id) != "SUCCESS":
            return 1
    return 0


def _load_catalogue():
    from geo_assets.geo.regions import load_catalogue

    return load_catalogue(_store())


def _backfill_progress(state: dict) -> None:
    counts = (state.get("assetBackfillData") or {}).get("assetBackfillStatuses") or []
    assets = ", ".join(
        f"{'/'.join(c['assetKey']['path'])} {c['numPartitionsMaterialized']}/{c['numPartitionsTargeted']}"
        + (f" ({c['numPartitionsFailed']} failed)" if c["numPartitionsFailed"] else "")
        for c in counts
        if "assetKey" in c
    )
    runs = collections.Counter(r["status"].lower() for r in state["runs"])
    print(
        f"  {state['status']:18} runs: {', '.join(f'{n} {s}' for s, n in sorted(runs.items())) or 'none yet'}; {assets}",
        flush=True,
    )


def cmd_backfill(args) -> int:
    from geo_assets.cli.graphql import ui_url
    from geo_assets.cli.launches import date_range
    from geo_assets.limits import max_backfill_partitions

    request = _request(args, date_range(args.start, args.end, max_backfill_partitions()))
    client = _ready_client(args.url)
    tags = {**request.tags, "geo-assets/dates": f"{args.start}...{args.end}", "geo-assets/trigger": "cli-backfill"}
    title = f"{args.region} {args.start} to {args.end}"
    backfill_id = client.launch_backfill(
        list(request.assets), list(request.partitions), request.run_config, tags, title
    )
    print(
        f"launched backfill {backfill_id} of {len(request.partitions)} partitions ({', '.join(request.assets)} of "
        f"{args.region}, {args.start} to {args.end}): {ui_url(args.url, '/runs/b/' + backfill_id)}",
        flush=True,
    )
    if not args.wait:
        return 0
    state = client.follow_backfill(backfill_id, report=_backfill_progress)
    failed = sum(
        c.get("numPartitionsFailed", 0)
        for c in (state.get("assetBackfillData") or {}).get("assetBackfillStatuses") or []
    )
    # A run lost with its machine fails and is retried (run retries): its retry, a run of the backfill too, decides.
    retried = {t["value"] for r in state["runs"] for t in r.get("tags") or [] if t["key"] == "dagster/parent_run_id"}
    ok = (
        state["status"] in ("COMPLETED", "COMPLETED_SUCCESS")
        and not failed
        and all(r["status"] == "SUCCESS" or r["runId"] in retried for r in state["runs"])
    )
    error = (state.get("error") or {}).get("message")
    print(
        f"backfill {backfill_id}: {state['status']}{f' ({failed} partitions failed)' if failed else ''}"
        f"{f' ({len(retried)} failed run(s) retried)' if retried else ''}"
        f"{': ' + error.strip().splitlines()[0] if error else ''}"
    )
    return 0 if ok else 1


def cmd_map(args) -> int:
    """Print (or open) the map view of an acquisition: its imagery, and a model version's predictions
    when a model or version is named (the model's serving version unless one is)."""
    from geo_assets.config import DEFAULT_MODEL
    from geo_assets.geo import acquisitions
    from geo_assets.geo.regions import validate_date
    from geo_assets.map.links import map_url
    from geo_assets.ml import registry
    from geo_assets.partitions import validate_model_name

    store = _store()
    region = load_region(store, args.region)
    date = validate_date(args.date)
    if not acquisitions.imagery_variants(store, region, date):
        raise FileNotFoundError(
            f"no imagery_tiles of region {region!r} on {date}: materialise imagery_tiles[{date}|{region}] first"
        )
    model, version = args.model, args.version
    if model or version:
        model = validate_model_name(model or DEFAULT_MODEL)
        version = registry.resolve_version(store, model, version, _min_miou())["version"]
        from geo_assets.map import layers

        layers.predictions(store, region, date, model, version)  # a link to nothing is refused, naming what is missing
    url = map_url(region, date, model, version)
    print(url)
    if args.open:
        import webbrowser

        webbrowser.open(url)
    return 0


def load_region(store, name: str) -> str:
    from geo_assets.geo.regions import load_catalogue

    return load_catalogue(store).get(name).name  # an unknown name fails here, naming the known ones


def cmd_map_server(args) -> int:
    from geo_assets.map.__main__ import main as serve

    return serve(["--host", args.host, "--port", str(args.port)])


def cmd_demo(args) -> int:
    from geo_assets.cli.demo import run_demo

    return run_demo(_instance(), quick=args.quick)


class _Parser(argparse.ArgumentParser):
    # Python 3.11's argparse reads `-5e8` (a number in scientific notation) as an option, so
    # `--bbox -5e8 ...` failed with "expected 4 arguments"; 3.13 widened the same private pattern to this.
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._negative_number_matcher = re.compile(r"^-\.?\d")


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog="geo-assets", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    region = sub.add_parser("region", help="list, add or remove regions").add_subparsers(
        dest="region_command", required=True
    )
    region.add_parser("list", help="list the regions catalogue").set_defaults(fn=cmd_region_list)
    add = region.add_parser("add", help="add a region and register its partition")
    add.add_argument("name", help="a slug: lowercase letters, digits, hyphens; at most 63 characters")
    add.add_argument(
        "--bbox",
        nargs=4,
        type=float,
        required=True,
        metavar=("MINX", "MINY", "MAXX", "MAXY"),
        help="footprint in the region's CRS units (metres)",
    )
    add.add_argument("--crs", required=True, help="a projected CRS in metres, e.g. EPSG:32631")
    add.add_argument("--source", default="synthetic", help="default imagery source (default: synthetic)")
    add.add_argument("--labels", default=None, help="label source: synthetic or polygons (default: none)")
    add.add_argument("--date", action="append", help="a known acquisition date YYYY-MM-DD (repeatable)")
    add.add_argument("--replace", action="store_true", help="replace an existing region's footprint")
    add.set_defaults(fn=cmd_region_add)
    remove = region.add_parser("remove", help="remove a region from the catalogue and its partition")
    remove.add_argument("name")
    remove.add_argument(
        "--delete-outputs",
        action="store_true",
        help="also delete its tiles, labels, predictions and reports (kept by default)",
    )
    remove.set_defaults(fn=cmd_region_remove)
    model = sub.add_parser("model", help="add a model, list its versions or choose the serving one").add_subparsers(
        dest="model_command", required=True
    )
    madd = model.add_parser("add", help="register a model name: its architecture, bands, training and evaluation sets")
    madd.add_argument("name", help="a slug: lowercase letters, digits, hyphens; at most 63 characters")
    madd.add_argument("--architecture", required=True, help="unet or fcn")
    madd.add_argument(
        "--hyperparameter",
        action="append",
        metavar="NAME=NUMBER",
        help="e.g. depth=3, base_channels=16 (unet), hidden_channels=32, num_layers=4 (fcn); repeatable",
    )
    madd.add_argument("--bands", nargs="+", required=True, help="the bands it reads, in order, e.g. blue green red nir")
    madd.add_argument("--training-regions", nargs="+", required=True, metavar="REGION", help="regions it trains on")
    madd.add_argument(
        "--training-dates", nargs="+", metavar="DATE", help="YYYY-MM-DD (default: every date with imagery at each run)"
    )
    madd.add_argument(
        "--evaluation-regions", nargs="+", required=True, metavar="REGION", help="held-out regions it is judged on"
    )
    madd.add_argument(
        "--evaluation-dates", nargs="+", metavar="DATE", help="YYYY-MM-DD (default: every date with imagery now)"
    )
    madd.set_defaults(fn=cmd_model_add)
    ls = model.add_parser("list", help="versions, their evaluations and which one serves")
    ls.add_argument("name")
    ls.set_defaults(fn=cmd_model_list)
    promote = model.add_parser("promote", help="make a gated version the serving one (--auto: the newest gated)")
    promote.add_argument("name")
    promote.add_argument("version", nargs="?")
    promote.add_argument("--auto", action="store_true", help="drop the promotion: serve the newest gated version")
    promote.set_defaults(fn=cmd_model_promote)
    evalset = model.add_parser("evaluation-set", help="register the evaluation set the model's gate is judged on")
    evalset.add_argument("name")
    evalset.add_argument("--regions", nargs="+", required=True, help="held-out regions")
    evalset.add_argument("--dates", nargs="+", help="dates YYYY-MM-DD (default: every date with imagery now)")
    evalset.set_defaults(fn=cmd_model_evaluation_set)
    sub.add_parser("init", help="register built-in regions and the default model").set_defaults(fn=cmd_init)
    launch = sub.add_parser("launch", help="launch one region x date partition on a running webserver (GraphQL)")
    launch.add_argument("--date", required=True, help="acquisition date YYYY-MM-DD")
    backfill = sub.add_parser("backfill", help="backfill a date range of one region through the daemon (GraphQL)")
    backfill.add_argument("--from", dest="start", required=True, metavar="D1", help="first date YYYY-MM-DD")
    backfill.add_argument("--to", dest="end", required=True, metavar="D2", help="last date YYYY-MM-DD (included)")
    for cmd, fn in ((launch, cmd_launch), (backfill, cmd_backfill)):
        cmd.add_argument("--region", required=True, help="a catalogued region")
        cmd.add_argument("--model", help="model name that predicts (default: landcover-unet)")
        cmd.add_argument("--version", help="model version (default: the model's serving version when the run starts)")
        cmd.add_argument("--source", help="imagery source (default: the region's)")
        cmd.add_argument(
            "--select",
            default="imagery_tiles,predictions,region_report",
            help="assets to materialise, comma-separated (default: imagery_tiles,predictions,region_report)",
        )
        cmd.add_argument("--wait", action="store_true", help="follow to the end; exit 1 unless every run succeeded")
        cmd.add_argument(
            "--url", default=DEFAULT_URL, help=f"the webserver's GraphQL endpoint (default: {DEFAULT_URL})"
        )
        cmd.set_defaults(fn=fn)
    train = sub.add_parser(
        "train", help="train a new model version on a running webserver (GraphQL): labels, then the model"
    )
    train.add_argument("model", help="model name (a partition of trained_model), e.g. landcover-unet")
    train.add_argument("--regions", nargs="+", required=True, help="catalogued regions to train on")
    train.add_argument(
        "--config",
        default="{}",
        help="trained_model's config as JSON: architecture, epochs, ... (default: its defaults)",
    )
    train.add_argument("--url", default=DEFAULT_URL, help=f"the webserver's GraphQL endpoint (default: {DEFAULT_URL})")
    train.set_defaults(fn=cmd_train)
    from geo_assets.map.__main__ import port as map_port
    from geo_assets.map.links import DEFAULT_PORT, MAP_URL_ENV

    where = sub.add_parser("map", help=f"print the link to an acquisition's map view (server address: {MAP_URL_ENV})")
    where.add_argument("region")
    where.add_argument("date", help="acquisition date YYYY-MM-DD")
    where.add_argument("--model", help="show this model's predictions (default with --version: landcover-unet)")
    where.add_argument("--version", help="model version (default: the model's serving version)")
    where.add_argument("--open", action="store_true", help="open it in the browser too")
    where.set_defaults(fn=cmd_map)
    serve = sub.add_parser("map-server", help="serve the map of the store's outputs (read-only)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    serve.add_argument("--port", type=map_port, default=DEFAULT_PORT, help=f"port (default: {DEFAULT_PORT})")
    serve.set_defaults(fn=cmd_map_server)
    demo = sub.add_parser("demo", help="materialise the whole asset graph on the embedded default")
    demo.add_argument("--quick", action="store_true", help="fewer epochs and dates (for tests)")
    demo.set_defaults(fn=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.fn(args)
    except (ValueError, LookupError, FileNotFoundError, LaunchError) as exc:
        print(f"geo-assets: error: {exc}", file=sys.stderr)
        return 2
