"""Bad input through the paths users take: the CLI and GraphQL against a real `dagster dev` (the UI's
launchpad: tests/ui/test_ui.py). Each input gets one clear error that names it and the problem, writes
nothing outside the storage root, and deletes or changes nothing stored; a refusal before any run
launches no run. The table below is the suite; RELIABILITY.md's `bad-inputs` section lists what each
input got, written by this module when asked (tests/faults/reliability.py).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import rasterio

from devtools.arrivals import BANDS, write_scene
from devtools.dagster_dev import graphql
from geo_assets.cli.graphql import DagsterClient, LaunchError
from geo_assets.geo.acquisitions import pick_imagery
from geo_assets.geo.messages import shown
from geo_assets.geo.regions import load_catalogue
from geo_assets.ml import registry
from tests.faults import reliability

MEASURES = [
    "geo_assets/cli/commands.py",
    "geo_assets/config.py",
    "geo_assets/cli/launches.py",
    "geo_assets/partitions.py",
    "geo_assets/geo/regions.py",
    "geo_assets/geo/store.py",
    "geo_assets/geo/stac/reads.py",
    "geo_assets/geo/stac/search.py",
    "geo_assets/assets/imagery.py",
    "geo_assets/ml/registry.py",
    "geo_assets/geo/messages.py",
    "geo_assets/geo/sources.py",
    "geo_assets/geo/tiling.py",
    "geo_assets/assets/common.py",
    "geo_assets/assets/labels.py",
    "geo_assets/assets/models.py",
    "geo_assets/cli/graphql.py",
    "tests/triggers/test_bad_inputs.py",
]
RUN_IDS = """{ runsOrError { ... on Runs { results { runId } } } }"""
FIELD = "tiny-field"  # the world's region (conftest.py) with imagery on 2024-06-01
DAY = f"2024-06-01|{FIELD}"
LOOKALIKE = "t\u0456ny-field"  # "tiny-field" with a Cyrillic i: looks the same, is another name
NAMES = {  # label: (the name, how errors must show it)
    "dot-dot": ("../x", "'../x'"),
    "slash": ("a/b", "'a/b'"),
    "nul": ("a\x00b", "'a\\x00b'"),
    "escape": ("a\x1b[31mb", "'a\\x1b[31mb'"),
    "newline": ("two\nlines", "'two\\nlines'"),
    "empty": ("", "''"),
    "10 KB": ("x" * 10_240, "(10,240 characters)"),
    "look-alike": (LOOKALIKE, "U+0456"),
}


@dataclass(frozen=True)
class Said:
    """What one input got: `refused` (before any run) or `failed` (the run's step said it), and the words."""

    how: str
    words: str

    @property
    def headline(self) -> str:
        """The error's first line: it says it all (a tile's failure adds the traceback where it ran)."""
        return self.words.split("\n")[0]


def _run_ids(url: str) -> set[str]:
    return {r["runId"] for r in graphql(url, RUN_IDS)["runsOrError"]["results"]}


def _cli(world, server) -> Callable[..., Said]:
    def run(*args: str) -> Said:
        proc = world.main(*args, "--url", server) if args[0] in ("launch", "train") else world.main(*args)
        assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)  # refused: a usage error
        assert proc.stdout == "" and proc.stderr.count("\n") == 1, proc.stderr  # one line, nothing else
        return Said("refused", proc.stderr.strip())

    return run


def _failed_run(server: str, run_id: str) -> Said:
    """The run's one step failure, followed to its end."""
    failures = [e.message for e in DagsterClient(server).follow_run(run_id) if getattr(e, "kind", "") == "STEP_FAILURE"]
    assert len(failures) == 1, failures
    return Said("failed", failures[0])


def _graphql_launch(server: str, assets: list[str], partition: str, ops: dict) -> Said:
    try:
        client = DagsterClient(server)
        if "|" not in partition:  # one-dimensional: a region's or a model's key
            run_id = client.launch_assets(assets, {"ops": ops}, {"dagster/partition": partition})
        else:
            run_id = client.launch_run(assets, partition, {"ops": ops}, {})
    except LaunchError as refused:
        return Said("refused", str(refused))
    return _failed_run(server, run_id)


def _snapshot(root: Path) -> dict[str, str]:
    """Every file under `root` but Dagster's own home and log, with its digest."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.relative_to(root).parts[0] not in ("home", "dev.log")
    }


@dataclass(frozen=True)
class Case:
    """One bad input through one path: `act(world, server)` does what a user does and returns what was said;
    `words` must all be in it; `damage(world)` puts the input in place first and returns its undo."""

    input: str
    path: str
    act: Callable[..., Said]
    words: list[str]
    damage: Callable[..., Callable[[], None]] | None = None


CASES: list[Case] = []

for label, (name, said) in NAMES.items():
    CASES += [
        Case(
            f"region name {label}",
            "CLI region add",
            lambda w, s, n=name: _cli(w, s)(
                "region", "add", n, "--bbox", "0", "0", "1280", "1280", "--crs", "EPSG:32631"
            ),
            ["invalid region name", said],
        ),
        Case(
            f"region name {label}",
            "CLI launch --region",
            lambda w, s, n=name: _cli(w, s)("launch", "--region", n, "--date", "2024-06-02"),
            ["invalid region name", said],
        ),
        Case(
            f"model name {label}",
            "CLI launch --model",
            lambda w, s, n=name: _cli(w, s)("launch", "--region", "tiny-field", "--date", "2024-06-02", "--model", n),
            ["invalid model name", said],
        ),
        Case(
            f"model name {label}",
            "CLI train",
            lambda w, s, n=name: _cli(w, s)("train", n, "--regions", "tiny-field"),
            ["invalid model name", said],
        ),
        Case(
            f"region name {label}",
            "GraphQL launch of imagery_tiles",
            lambda w, s, n=name: _graphql_launch(s, ["imagery_tiles"], f"2024-06-02|{n}", {}),
            ["invalid region name", said],
        ),
        Case(
            f"region name {label}",
            "GraphQL launch of predictions",
            lambda w, s, n=name: _graphql_launch(s, ["predictions"], f"2024-06-02|{n}", {}),
            ["invalid region name", said],
        ),
        Case(
            f"region name {label}",
            "GraphQL launch of labels",
            lambda w, s, n=name: _graphql_launch(s, ["labels"], n, {}),
            ["invalid region name", said],
        ),
        Case(
            f"model name {label}",
            "GraphQL launch of training_set",
            lambda w, s, n=name: _graphql_launch(s, ["training_set"], n, {}),
            ["invalid model name", said],
        ),
    ]

MODEL = "landcover-unet"  # the world's trained model
BOUNDS = [  # (asset, its partition, field, value past the bound, the words its error must hold)
    ("imagery_tiles", DAY, "tile_size", 4112, ["tile_size must be a multiple of 16 between 16 and 4096, got 4112"]),
    ("imagery_tiles", DAY, "tile_size", 8, ["tile_size must be a multiple of 16 between 16 and 4096, got 8"]),
    ("imagery_tiles", DAY, "max_cloud", 100.5, ["max_cloud must be a percentage between 0 and 100, got 100.5"]),
    ("imagery_tiles", DAY, "max_cloud", -0.5, ["max_cloud must be a percentage between 0 and 100, got -0.5"]),
    ("imagery_tiles", DAY, "bands", [], ["bands must be a non-empty list without repeats"]),
    (
        "imagery_tiles",
        DAY,
        "bands",
        ["red"] * 3000,
        ["bands must be a non-empty list without repeats", "(3,000 items)"],
    ),
    ("imagery_tiles", DAY, "source", "s" * 10_240, ["not in enum type ImagerySource", "characters)"]),
    ("imagery_tiles", DAY, "arrivals", "../elsewhere", ["invalid storage key '../elsewhere'"]),
    ("labels", FIELD, "tile_size", 4112, ["tile_size must be a multiple of 16 between 16 and 4096, got 4112"]),
    ("predictions", DAY, "batch_size", 0, ["batch_size must be between 1 and 256, got 0"]),
    ("predictions", DAY, "batch_size", 257, ["batch_size must be between 1 and 256, got 257"]),
    ("predictions", DAY, "margin", 264, ["margin must be a multiple of 8 px between 0 and 256, got 264"]),
    ("predictions", DAY, "margin", 4, ["margin must be a multiple of 8 px between 0 and 256, got 4"]),
    ("predictions", DAY, "tile_size", 8, ["tile_size must be a multiple of 16 between 16 and 4096, got 8"]),
    ("predictions", DAY, "version", "../../x", ["invalid model version '../../x'"]),
    ("predictions", DAY, "model", "../evil", ["invalid model name '../evil'"]),
    ("region_report", DAY, "margin", 264, ["margin must be a multiple of 8 px between 0 and 256, got 264"]),
    ("region_report", DAY, "tile_size", 4112, ["tile_size must be a multiple of 16 between 16 and 4096, got 4112"]),
    (
        "training_set",
        MODEL,
        "regions",
        ["a"] * 257,
        ["regions must name at least one region and at most 256", "(257 items)"],
    ),
    ("training_set", MODEL, "dates", ["2024-06-01"] * 1001, ["dates must list at most 1,000 dates"]),
    (
        "training_set",
        MODEL,
        "acquisitions",
        [f"{FIELD}/2024-06-01"] * 10_001,
        ["acquisitions must list at most 10,000"],
    ),
    ("trained_model", MODEL, "epochs", 0, ["epochs must be from 1 to 1,000, got 0"]),
    ("model_evaluation", MODEL, "batch_size", 257, ["batch_size must be between 1 and 256, got 257"]),
]
CASES += [
    Case(
        f"{asset} {field}: {shown(value, 40)}",
        "GraphQL launch",
        lambda w, s, a=asset, k=key, f=field, v=value: _graphql_launch(s, [a], k, {a: {"config": {f: v}}}),
        words,
    )
    for asset, key, field, value, words in BOUNDS
]

TRAINING = [  # trained_model's config through `geo-assets train --config`
    ({"epochs": 0}, "epochs must be from 1 to 1,000, got 0"),
    ({"epochs": 1001}, "epochs must be from 1 to 1,000, got 1001"),
    ({"chip_size": 1040}, "chip_size must be a multiple of 16 between 16 and 1024, got 1040"),
    ({"learning_rate": 1}, "learning_rate must be in (0, 1), got 1"),
    ({"chips_per_epoch": 100_001}, "chips_per_epoch must be from 1 to 100,000, got 100001"),
    ({"seed": -1}, "seed must be from 0 to 4,294,967,295, got -1"),
    ({"batch_size": 64, "chip_size": 1024}, "batch_size x chip_size² is 67,108,864 pixels; the limit is 16,777,216"),
    ({"hyperparameters": {"depth": 99}}, "hyperparameter depth of 'unet' must be a whole number from 1 to 6, got 99"),
    ({"epochs": "many"}, "epochs: Input should be a valid integer"),
    ({"epoch": 3}, "unknown field(s) 'epoch'; trained_model takes architecture, "),
]
CASES += [
    Case(
        f"trained_model config {json.dumps(config)}",
        "CLI train --config",
        lambda w, s, c=config: _cli(w, s)(
            "train", "landcover-unet", "--regions", "tiny-field", "--config", json.dumps(c)
        ),
        [words],
    )
    for config, words in TRAINING
]


# -- files: what a source delivers, what the tile store and the model registry hold


def _rewrite(path: Path, how: Callable[[np.ndarray, dict], tuple[np.ndarray, dict]]) -> None:
    """Write the raster at `path` again, its pixels and profile changed by `how`."""
    with rasterio.open(path) as src:
        data, profile = src.read(), dict(src.profile)
    data, profile = how(data, profile)
    profile.update(count=data.shape[0], dtype=str(data.dtype))
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)


GREEN = f"{BANDS['green']}.tif"  # the band damaged
SOURCE_DAMAGE: dict[str, tuple[Callable[[Path], None], list[str]]] = {  # a COG of an arrived scene: how, the words
    "truncated": (
        lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 3]),
        [GREEN, "corrupt or truncated GeoTIFF"],
    ),
    "not a GeoTIFF": (
        lambda p: p.write_bytes(b"<html>503 Service Unavailable</html>" * 40),
        [GREEN, "corrupt or truncated GeoTIFF"],
    ),
    "another CRS": (
        lambda p: _rewrite(p, lambda d, pr: (d, {**pr, "crs": "EPSG:32632"})),
        [GREEN, "in EPSG:32632, but its STAC item declares EPSG:32631"],
    ),
    "three bands": (
        lambda p: _rewrite(p, lambda d, pr: (np.concatenate([d, d, d]), pr)),
        [GREEN, "has 3 band(s) of uint16"],
    ),
    "float pixels": (
        lambda p: _rewrite(p, lambda d, pr: (d.astype("float32") / 7, pr)),
        [GREEN, "has 1 band(s) of float32"],
    ),
    "all nodata": (
        lambda p: _rewrite(p, lambda d, pr: (np.zeros_like(d), pr)),
        ["S2A_T31_20240515_0 cover it, but their pixels there are all nodata"],
    ),
}


def _arrived_scene(date: str, damage: Callable[[Path], None]) -> Callable:
    def put(world) -> Callable[[], None]:
        folder = f"incoming/{FIELD}/{date}"
        item = f"S2A_T31_{date.replace('-', '')}_0"
        field = load_catalogue(world.store).get(FIELD)
        write_scene(world.store, folder, item, field.bbox, field.crs, date=date, seed=3)
        damage(Path(world.store.path(f"{folder}/{item}/{BANDS['green']}.tif")))
        return lambda: shutil.rmtree(world.store.path(folder))

    return put


CASES += [
    Case(
        f"source COG {label}",
        "GraphQL launch",
        lambda w, s, d=f"2024-05-{i + 10:02d}": _graphql_launch(
            s,
            ["imagery_tiles"],
            f"{d}|{FIELD}",
            {"imagery_tiles": {"config": {"arrivals": f"incoming/{FIELD}/{d}", "tile_size": 64}}},
        ),
        words,
        _arrived_scene(f"2024-05-{i + 10:02d}", damage),
    )
    for i, (label, (damage, words)) in enumerate(SOURCE_DAMAGE.items())
]


def _stored(world, key: str, damage: Callable[[Path], None]) -> Callable[[], None]:
    """Damage the stored object `key` (of the world every test here shares); its undo puts it back."""
    path = Path(world.store.path(key))
    kept = path.read_bytes()
    damage(path)
    return lambda: path.write_bytes(kept)


def _a_tile(world) -> str:
    return pick_imagery(world.store, FIELD, "2024-06-01")[1]["tiles"][0]["path"]


def _model_file(world, name: str) -> str:
    return f"{registry.model_prefix('landcover-unet', world.version)}/{name}"


STORED_DAMAGE = {  # what: (the stored key, how, predictions' config, the words)
    "imagery tile truncated": (_a_tile, lambda p: p.write_bytes(p.read_bytes()[:500]), {}, "cannot read raster"),
    "imagery tile all nodata": (
        _a_tile,
        lambda p: _rewrite(p, lambda d, pr: (np.zeros_like(d), pr)),
        {},
        "does not hold the pixels its manifest records",
    ),
    "model.onnx truncated": (
        lambda w: _model_file(w, registry.ONNX_FILE),
        lambda p: p.write_bytes(p.read_bytes()[:1000]),
        {"inference_runtime": "onnxruntime"},
        "model.onnx is 1,000 bytes, but",
    ),
    "model.pt2 truncated": (
        lambda w: _model_file(w, registry.WEIGHTS_FILE),
        lambda p: p.write_bytes(p.read_bytes()[:1000]),
        {"inference_runtime": "torch"},
        "model.pt2 is 1,000 bytes, but",
    ),
    "model.json empty": (
        lambda w: _model_file(w, registry.MODEL_FILE),
        lambda p: p.write_bytes(b""),
        {},
        "model 'landcover-unet': the record of version",
    ),
}
CASES += [
    Case(
        label,
        "GraphQL launch",
        lambda w, s, c=config: _graphql_launch(
            s, ["predictions"], f"2024-06-01|{FIELD}", {"predictions": {"config": {"tile_size": 64, **c}}}
        ),
        [words],
        lambda w, k=key, d=damage: _stored(w, k(w), d),
    )
    for label, (key, damage, config, words) in STORED_DAMAGE.items()
]


SEEN: list[tuple[str, str, Said]] = []


@pytest.mark.parametrize("case", CASES, ids=[f"{c.input} via {c.path}" for c in CASES])
def test_bad_input_gets_one_clear_error_and_touches_nothing(world, server, case):
    undo = case.damage(world) if case.damage else None
    try:
        _one_clear_error(world, server, case)
    finally:
        if undo:
            undo()


def _one_clear_error(world, server, case: Case) -> None:
    before_runs, before_files = _run_ids(server), _snapshot(world.tmp)
    said = case.act(world, server)
    headline = said.headline
    assert all(w in headline for w in case.words), said
    assert len(headline) < 600, said  # one clear line, not the input echoed back whole
    after = _snapshot(world.tmp)
    assert {k: v for k, v in after.items() if k in before_files} == before_files  # nothing deleted or changed
    written = sorted(set(after) - set(before_files))
    if said.how == "refused":
        assert not written
    else:  # a failed step may leave work a rerun reuses (finished tiles), inside the storage root, unpublished
        assert all(k.startswith("storage/") and not k.startswith("storage/manifests/") for k in written), written
    if said.how == "refused":
        assert _run_ids(server) == before_runs
    SEEN.append((case.input, case.path, said))


def test_the_table_is_recorded():
    """RELIABILITY.md's `bad-inputs` section: every case above, once all of them passed in this run."""
    if len(SEEN) != len(CASES):
        pytest.skip(f"{len(CASES) - len(SEEN)} of {len(CASES)} cases did not pass in this process: nothing recorded")
    refused = sum(s.how == "refused" for _, _, s in SEEN)
    reliability.record(
        "bad-inputs",
        "Bad input through the CLI and GraphQL",
        "tests/triggers/test_bad_inputs.py",
        MEASURES,
        f"{len(SEEN)} bad inputs against a `dagster dev` serving a tiny world, through the CLI and GraphQL: "
        "hostile region and model names (`../x`, `a/b`, NUL, an escape sequence, a newline, empty, 10 KB, a "
        "Cyrillic look-alike) as arguments and partition keys; run config past each bound of every asset; "
        "trained_model config past each bound through `geo-assets train`; an arrived scene's COG truncated, "
        "not a GeoTIFF, in another CRS, of three bands, of floats, all nodata; a stored imagery tile truncated "
        "or zeroed, model.onnx and model.pt2 truncated, model.json empty. Each got one error whose first line "
        f"names it and the problem: {refused} were refused before any run, {len(SEEN) - refused} failed their "
        "run's step. No stored file was changed or deleted; a refusal wrote nothing; a failed step wrote "
        "nothing outside the storage root and published nothing (no manifest).",
        {f"{kind} via {path}": f"{said.how}: {said.headline[:160]}".replace("|", "\\|") for kind, path, said in SEEN},
    )
