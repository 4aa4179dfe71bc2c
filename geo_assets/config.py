"""Run config for each stage. Validation errors name the field, the bad value and what is accepted."""

import enum
import re
from typing import TYPE_CHECKING, Annotated, TypeAlias

import dagster as dg
from pydantic import AfterValidator, ConfigDict, PlainSerializer, ValidationError, model_validator

from geo_assets.geo import sample, stac, synthetic
from geo_assets.geo.labels import LABEL_SOURCES
from geo_assets.geo.margins import MAX_MARGIN
from geo_assets.geo.messages import shown
from geo_assets.geo.regions import validate_date, validate_region_name
from geo_assets.geo.sources import SOURCES
from geo_assets.geo.store import validate_key
from geo_assets.ml.options import ARCHITECTURE_NAMES, MAX_BATCH, RUNTIMES
from geo_assets.partitions import validate_model_name

__all__ = [
    "Acquisition",
    "Acquisitions",
    "Architecture",
    "Band",
    "Bands",
    "BatchSize",
    "ConfigError",
    "DEFAULT_MODEL",
    "Date",
    "Dates",
    "Device",
    "EvaluationConfig",
    "EvaluationSetConfig",
    "ImageryConfig",
    "ImagerySource",
    "InferenceRuntime",
    "LabelSource",
    "LabelsConfig",
    "MAX_BATCH_PIXELS",
    "Margin",
    "ModelName",
    "PredictionConfig",
    "RegionName",
    "Regions",
    "ReportConfig",
    "TileSize",
    "TrainingConfig",
    "TrainingSetConfig",
    "Version",
    "validated",
]

DEFAULT_MODEL = "landcover-unet"


def _enum(name: str, values):
    """A config enum: the launchpad offers these values and refuses any other before a run starts. The
    step sees the plain string ("earth-search"), as manifests, paths, metadata and messages need."""
    members = enum.StrEnum(name, {v: v for v in values})  # type: ignore[misc]  # mypy reads only literal enum names
    return Annotated[members, AfterValidator(str), PlainSerializer(str, return_type=str)]


class ConfigError(ValueError):
    """Run config refused: each problem on one line that names its field (pydantic's own report is a block
    of lines with its input repeated and a link)."""


def _one_line(exc: ValidationError) -> str:
    """Each of pydantic's errors as one clause naming its field."""
    said = []
    for error in exc.errors():
        message = error["msg"].removeprefix("Value error, ")
        field = ".".join(map(str, error["loc"]))  # pydantic's own messages ("Input should be ...") name none
        said.append(message if not field or field.split(".")[0] in message else f"{field}: {message}")
    return "; ".join(said)


class _Config(dg.Config):
    model_config = ConfigDict(validate_default=True)  # defaults pass the same validators (enums become str)

    def __init__(self, **values) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:  # what the step says when a run's config is past a bound
            raise ConfigError(_one_line(exc)) from None


# Enumerated settings: checked by Dagster's config system when a run is launched (UI, GraphQL, CLI).
if TYPE_CHECKING:  # built from runtime lists, so invisible to the type checker: to it, the str a step sees
    ImagerySource: TypeAlias = str
    LabelSource: TypeAlias = str
    Architecture: TypeAlias = str
    Device: TypeAlias = str
    InferenceRuntime: TypeAlias = str
    Band: TypeAlias = str
else:
    ImagerySource = _enum("ImagerySource", sorted(SOURCES))
    LabelSource = _enum("LabelSource", LABEL_SOURCES)
    Architecture = _enum("Architecture", sorted(ARCHITECTURE_NAMES))
    Device = _enum("Device", ["auto", "cpu", "cuda", *(f"cuda:{i}" for i in range(8))])
    InferenceRuntime = _enum("InferenceRuntime", RUNTIMES)
    Band = _enum(
        "Band",
        dict.fromkeys(
            [
                *synthetic.BANDS,
                *(b for s in sample.SAMPLES.values() for b in s.bands),
                *(b for c in stac.COLLECTIONS.values() for b in c.assets),
            ]
        ),
    )


def validated(predicate, message: str):
    """A pydantic validator for an `Annotated` config field: `message` (with `{value}`) when `predicate` fails."""

    def check(value):
        if not predicate(value):
            raise ValueError(message.format(value=shown(value)))  # a 10 KB list is not echoed whole
        return value

    return AfterValidator(check)


def _whole(low: int, high: int, what: str):
    return validated(lambda v: low <= v <= high, what + f" must be from {low:,} to {high:,}, got {{value}}")


# Numeric ranges: Dagster's config schema has no ranges, so these fail when the step builds its
# config, before any work. Floats also refuse inf and nan (comparisons with nan are false).
RegionName = Annotated[str, AfterValidator(validate_region_name)]
Date = Annotated[str, AfterValidator(validate_date)]
ModelName = Annotated[str, AfterValidator(validate_model_name)]
TileSize = Annotated[
    int,
    validated(
        lambda v: 16 <= v <= 4096 and v % 16 == 0, "tile_size must be a multiple of 16 between 16 and 4096, got {value}"
    ),
]
BatchSize = Annotated[
    int, validated(lambda v: 1 <= v <= MAX_BATCH, f"batch_size must be between 1 and {MAX_BATCH}, got {{value}}")
]
Margin = Annotated[
    int,
    validated(
        lambda v: 0 <= v <= MAX_MARGIN and v % 8 == 0,
        f"margin must be a multiple of 8 px between 0 and {MAX_MARGIN}, got {{value}}",
    ),
]
Bands = Annotated[
    list[Band],
    validated(lambda v: v and len(set(v)) == len(v), "bands must be a non-empty list without repeats, got {value}"),
]
MAX_BATCH_PIXELS = 2**24  # a training batch's pixels (batch_size x chip_size²): 64 chips of 512 px


class ImageryConfig(_Config):
    source: ImagerySource | None = None  # default: the region's own source in the catalogue
    # Default: in a run that also predicts, the bands its model reads; otherwise blue, green, red, nir.
    bands: Bands | None = None
    tile_size: TileSize = 256  # pixels per tile side
    # STAC sources: keep items whose eo:cloud_cover (percent of the whole item) is at most this.
    max_cloud: Annotated[
        float, validated(lambda v: 0 <= v <= 100, "max_cloud must be a percentage between 0 and 100, got {value}")
    ] = 100.0
    # A storage folder holding this partition's arrived STAC items (set by the scene_arrivals sensor):
    # read them, and their COGs, instead of searching the source's catalogue.
    arrivals: Annotated[str, AfterValidator(lambda v: validate_key(v.strip("/")))] | None = None


class LabelsConfig(_Config):
    source: LabelSource | None = None  # default: the region's label source in the catalogue
    tile_size: TileSize = 256


Regions = Annotated[
    list[RegionName],
    validated(lambda v: 1 <= len(v) <= 256, "regions must name at least one region and at most 256, got {value}"),
]
Dates = Annotated[list[Date], validated(lambda v: len(v) <= 1000, "dates must list at most 1,000 dates")]
Acquisition = Annotated[
    str,
    validated(
        lambda v: v.count("/") == 1 and validate_region_name(v.split("/")[0]) and validate_date(v.split("/")[1]),
        "an acquisition is REGION/YYYY-MM-DD, got {value}",
    ),
]
Acquisitions = Annotated[
    list[Acquisition], validated(lambda v: len(v) <= 10_000, "acquisitions must list at most 10,000")
]
Version = Annotated[
    str, validated(lambda v: re.fullmatch(r"[0-9a-f]{12}", v), "invalid model version {value}: 12 hex digits")
]


class _SetConfig(_Config):
    if TYPE_CHECKING:
        regions: list[str]  # each subclass declares its own field (with its own bounds)

    # Empty dates: every date of each region that has imagery *when the set is materialised*; the manifest
    # records the dates that resolved to, and the set keeps them until someone selects it again.
    dates: Dates = []
    # Exactly these REGION/YYYY-MM-DD acquisitions (the input_changes sensor passes a set's own, to refresh
    # their data versions without re-selecting). Every region listed must be in `regions`, and `dates` empty.
    acquisitions: Acquisitions = []

    @model_validator(mode="after")
    def _one_selection(self):
        if self.acquisitions:
            if self.dates:
                raise ValueError("give dates or acquisitions, not both")
            outside = sorted({a.split("/")[0] for a in self.acquisitions} - set(self.regions))
            if outside:
                raise ValueError(f"acquisitions name region(s) {', '.join(outside)} that regions does not list")
        return self


class TrainingSetConfig(_SetConfig):
    """Which acquisitions a model trains on: the lineage of every version trained from this set."""

    regions: Regions = ["synth-train-a", "synth-train-b"]


class EvaluationSetConfig(_SetConfig):
    """Held-out acquisitions a model is judged on; their footprints may not touch the training ground.
    The first selection for a model becomes its registered evaluation set (the one its gate is judged on);
    only `geo-assets model evaluation-set` changes it later: no run config can, or a run could pick the
    set its own version is judged on."""

    regions: Regions = ["synth-holdout"]


class TrainingConfig(_Config):
    architecture: Architecture = "unet"
    # Passed to the architecture, e.g. {"base_channels": 16}; ranges in geo_assets.ml.models.HYPERPARAMETERS.
    hyperparameters: dict[str, float] = {}
    epochs: Annotated[int, _whole(1, 1000, "epochs")] = 8
    batch_size: BatchSize = 8
    learning_rate: Annotated[float, validated(lambda v: 0 < v < 1, "learning_rate must be in (0, 1), got {value}")] = (
        2e-3
    )
    chip_size: Annotated[
        int,
        validated(
            lambda v: 16 <= v <= 1024 and v % 16 == 0,
            "chip_size must be a multiple of 16 between 16 and 1024, got {value}",
        ),
    ] = 128
    chips_per_epoch: Annotated[int, _whole(1, 100_000, "chips_per_epoch")] = 256
    seed: Annotated[int, _whole(0, 2**32 - 1, "seed")] = 0
    device: Device = "auto"  # auto picks CUDA when present

    @model_validator(mode="after")
    def _fits(self):
        from geo_assets.ml.models import check_hyperparameters  # torch, only where a training config is built

        hyper = check_hyperparameters(self.architecture, self.hyperparameters)
        if self.batch_size * self.chip_size**2 > MAX_BATCH_PIXELS:
            raise ValueError(
                f"batch_size x chip_size² is {self.batch_size * self.chip_size**2:,} pixels; the limit is "
                f"{MAX_BATCH_PIXELS:,} (e.g. batch_size 64 of chip_size 512)"
            )
        multiple = 2 ** hyper.get("depth", 3) if self.architecture == "unet" else 1
        if self.chip_size % multiple:
            raise ValueError(
                f"chip_size {self.chip_size} must be a multiple of {multiple} for a unet of depth {multiple.bit_length() - 1}"
            )
        return self


class EvaluationConfig(_Config):
    # The threshold is not here: it is the deployment's `gate` resource (GEO_ASSETS_MIN_MIOU).
    batch_size: BatchSize = 16
    device: Device = "auto"


class PredictionConfig(_Config):
    model: ModelName = DEFAULT_MODEL
    version: Version | None = None  # default: the model's serving version (promoted, else newest gated)
    batch_size: BatchSize | None = None  # default: measured on the machine with the thread layout
    device: Device = "auto"
    inference_runtime: InferenceRuntime | None = None  # default: GEO_ASSETS_INFERENCE_RUNTIME, else auto
    # Pixels of the neighbouring tiles each tile is predicted with (then cropped): no seams at tile edges.
    # 0: tiles alone. A multiple of the model's pad multiple, at most half the tile. Default: 32 px
    # (geo.margins.default_margin: half the tile, rounded down to a multiple of 8, for tiles under 64 px).
    margin: Margin | None = None
    # Which imagery variant to predict when the run does not cut it: default, the one holding the model's
    # bands with the fewest others, of the region's source, else of 256 px tiles.
    tile_size: TileSize | None = None
    source: ImagerySource | None = None


class ReportConfig(_Config):
    """Which model version's predictions to report. In a run that also predicts, that run's version."""

    model: ModelName | None = None  # default: the predicting run's model, else landcover-unet
    version: Version | None = None  # default: the predicting run's version, else the serving one
    # Which of the version's predictions, when the run does not predict: default, the only one, else the
    # imagery variant predictions would choose at its default margin.
    margin: Margin | None = None
    tile_size: TileSize | None = None
    source: ImagerySource | None = None
