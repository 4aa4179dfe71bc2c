"""Run config for each stage. Validation errors name the field, the bad value and what is accepted."""


import re
from typing import Annotated, Optional

import dagster as dg
from pydantic import AfterValidator

from geo_assets.geo.labels import LABEL_SOURCES
from geo_assets.geo.margins import MAX_MARGIN
from geo_assets.geo.regions import validate_date, validate_region_name
from geo_assets.geo.store import validate_key
from geo_assets.geo.sources import SOURCES
from geo_assets.ml.layout import MAX_BATCH
from geo_assets.ml.models import ARCHITECTURES
from geo_assets.ml.runtime import RUNTIMES
from geo_assets.partitions import validate_model_name

DEFAULT_MODEL = "landcover-unet"


def _one_of(accepted, what: str):
    def check(value: str) -> str:
        if value not in accepted:
            raise ValueError(f"unknown {what} {value!r}; accepted: {', '.join(sorted(accepted))}")
        return value

    return AfterValidator(check)


def _check(predicate, message: str):
    def check(value):
        if not predicate(value):
            raise ValueError(message.format(value=value))
        return value

    return AfterValidator(check)


Source = Annotated[str, _one_of(SOURCES, "imagery source")]
LabelSource = Annotated[str, _one_of(LABEL_SOURCES, "label source")]
Architecture = Annotated[str, _one_of(ARCHITECTURES, "architecture")]
RegionName = Annotated[str, AfterValidator(validate_region_name)]
Date = Annotated[str, AfterValidator(validate_date)]
ModelName = Annotated[str, AfterValidator(validate_model_name)]
Device = Annotated[
    str, _check(lambda v: re.fullmatch(r"auto|cpu|cuda(:\d+)?", v), "unknown device {value!r}; accepted: auto, cpu, cuda, cuda:N")
]
TileSize = Annotated[
    int, _check(lambda v: 16 <= v <= 4096 and v % 16 == 0, "tile_size must be a multiple of 16 between 16 and 4096, got {value}")
]
Positive = Annotated[int, _check(lambda v: v > 0, "must be > 0, got {value}")]
BatchSize = Annotated[
    int, _check(lambda v: 1 <= v <= MAX_BATCH, f"batch_size must be between 1 and {MAX_BATCH}, got {{value}}")
]
InferenceRuntime = Annotated[str, _one_of(RUNTIMES, "inference runtime")]
Margin = Annotated[
    int, _check(lambda v: 0 <= v <= MAX_MARGIN and v % 8 == 0,
                f"margin must be a multiple of 8 px between 0 and {MAX_MARGIN}, got {{value}}")
]
Bands = Annotated[
    list[str], _check(lambda v: v and len(set(v)) == len(v), "bands must be a non-empty list without repeats, got {value}")
]


class ImageryConfig(dg.Config):
    source: Optional[Source] = None  # default: the region's own source in the catalogue
    bands: Bands = ["blue", "green", "red", "nir"]
    tile_size: TileSize = 256  # pixels per tile side
    # STAC sources: keep items whose eo:cloud_cover (percent of the whole item) is at most this.
    max_cloud: Annotated[float, _check(lambda v: 0 <= v <= 100, "max_cloud must be a percentage between 0 and 100, got {value}")] = 100.0
    # A storage folder holding this partition's arrived STAC items (set by the scene_arrivals sensor):
    # read them, and their COGs, instead of searching the source's catalogue.
    arrivals: Optional[Annotated[str, AfterValidator(lambda v: validate_key(v.strip("/")))]] = None


class LabelsConfig(dg.Config):
    source: Optional[LabelSource] = None  # default: the region's label source in the catalogue
    tile_size: TileSize = 256


Regions = Annotated[list[RegionName], _check(bool, "regions must name at least one region")]
Version = Annotated[str, _check(lambda v: re.fullmatch(r"[0-9a-f]{12}", v), "invalid model version {value!r}: 12 hex digits")]


class TrainingSetConfig(dg.Config):
    """Which acquisitions a model trains on: the lineage of every version trained from this set."""

    regions: Regions = ["synth-train-a", "synth-train-b"]
    dates: list[Date] = []  # empty: every date of each region that has imagery


class EvaluationSetConfig(dg.Config):
    """Held-out acquisitions a model is judged on; their footprints may not touch the training ground."""

    regions: Regions = ["synth-holdout"]
    dates: list[Date] = []


class TrainingConfig(dg.Config):
    architecture: Architecture = "unet"
    hyperparameters: dict[str, float] = {}  # passed to the architecture, e.g. {"base_channels": 16}
    epochs: Positive = 8
    batch_size: Positive = 8
    learning_rate: Annotated[float, _check(lambda v: 0 < v < 1, "learning_rate must be in (0, 1), got {value}")] = 2e-3
    chip_size: Positive = 128
    chips_per_epoch: Positive = 256
    seed: int = 0
    device: Device = "auto"  # auto picks CUDA when present


class EvaluationConfig(dg.Config):
    # The threshold is not here: it is the deployment's `gate` resource (GEO_ASSETS_MIN_MIOU).
    batch_size: Positive = 16
    device: Device = "auto"


class PredictionConfig(dg.Config):
    model: ModelName = DEFAULT_MODEL
    version: Optional[Version] = None  # default: the model's serving version (promoted, else newest gated)
    batch_size: Optional[BatchSize] = None  # default: measured on the machine with the thread layout
    device: Device = "auto"
    inference_runtime: Optional[InferenceRuntime] = None  # default: GEO_ASSETS_INFERENCE_RUNTIME, else auto
    # Pixels of the neighbouring tiles each tile is predicted with (then cropped): no seams at tile edges.
    # 0: tiles alone. A multiple of the model's pad multiple, at most half the tile. Default: 32 px
    # (geo.margins.default_margin: half the tile, rounded down to a multiple of 8, for tiles under 64 px).
    margin: Optional[Margin] = None


class ReportConfig(dg.Config):
    """Which model version's predictions to report. In a run that also predicts, that run's version."""

    model: Optional[ModelName] = None  # default: the predicting run's model, else landcover-unet
    version: Optional[Version] = None  # default: the predicting run's version, else the serving one
