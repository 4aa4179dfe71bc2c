"""A model's input: tile DN scaled to the numbers the model was trained on. No torch here: the
code location's processes read normalisations from model records without importing it."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from geo_assets.geo.landcover import REFLECTANCE_SCALE

# Bright clouds/snow can exceed reflectance 1; clip a bit above that instead of at 1.
MAX_REFLECTANCE = 1.5


def normalize(array: np.ndarray) -> np.ndarray:
    """DN (any dtype, (C,H,W) or (N,C,H,W)) -> float32 reflectance in [0, 1.5], NaN -> 0."""
    array = np.asarray(array)
    if array.ndim not in (3, 4):
        raise ValueError(f"expected an array of shape (C,H,W) or (N,C,H,W), got shape {array.shape}")
    out = array.astype(np.float32)  # always a copy: the caller's array is never modified
    out /= np.float32(REFLECTANCE_SCALE)
    # nan_to_num also maps +/-inf; then clip keeps the network's input range bounded. Integer DN
    # have neither, and skipping the scan saves a third of this function's time per tile.
    if not np.issubdtype(array.dtype, np.integer):
        np.nan_to_num(out, copy=False, nan=0.0, posinf=MAX_REFLECTANCE, neginf=0.0)
    np.clip(out, 0.0, MAX_REFLECTANCE, out=out)
    return out


@dataclass(frozen=True)
class Normalisation:
    """A model's input: which bands, and how their DN were scaled (x = DN * scale + offset, per band).

    Fitted on the training tiles (each band standardised over its valid pixels), stored with the
    model version (model.json, "normalisation") and applied at prediction, so the model always sees
    the numbers it was trained on, whatever bands and order the imagery tiles hold: bands are
    picked by name. Pixels with no data (a band at the fill value 0) become 0, the training mean.
    Versions stored before normalisations were recorded use `legacy`: DN / 10000 clipped to [0, 1.5].
    """

    bands: tuple[str, ...]
    scale: tuple[float, ...]
    offset: tuple[float, ...]
    legacy_clip: bool = False  # the pre-record rule: NaN -> 0, then clip to [0, MAX_REFLECTANCE]

    def __post_init__(self) -> None:
        object.__setattr__(self, "bands", tuple(self.bands))
        object.__setattr__(self, "scale", tuple(float(v) for v in self.scale))
        object.__setattr__(self, "offset", tuple(float(v) for v in self.offset))
        if not self.bands or len(set(self.bands)) != len(self.bands):
            raise ValueError(f"a normalisation needs distinct band names, got {list(self.bands)}")
        if not (len(self.bands) == len(self.scale) == len(self.offset)):
            raise ValueError(
                f"bands, scale and offset differ in length: {len(self.bands)}, {len(self.scale)}, {len(self.offset)}"
            )
        if not all(math.isfinite(v) and v != 0 for v in self.scale) or not all(math.isfinite(v) for v in self.offset):
            raise ValueError(f"scale must be finite and non-zero, offset finite: {self.scale}, {self.offset}")

    @classmethod
    def legacy(cls, bands: Sequence[str]) -> Normalisation:
        return cls(tuple(bands), (1 / REFLECTANCE_SCALE,) * len(bands), (0.0,) * len(bands), legacy_clip=True)

    @classmethod
    def identity(cls, bands: Sequence[str]) -> Normalisation:
        """Picks the bands and keeps their DN (as float32): for fitting a normalisation."""
        return cls(tuple(bands), (1.0,) * len(bands), (0.0,) * len(bands))

    @classmethod
    def fit(cls, images: Sequence[np.ndarray], bands: Sequence[str]) -> Normalisation:
        """Standardise each band over the valid pixels (no band 0) of (C,H,W) DN images."""
        moments = BandMoments(len(bands))
        for image in images:
            moments.add(*BandMoments.of(image))
        return moments.normalisation(bands)

    @classmethod
    def from_record(cls, record: dict) -> Normalisation:
        """The normalisation stored with a model version; `legacy` for versions stored before."""
        stored = record.get("normalisation")
        if stored is None:
            return cls.legacy(record["bands"])
        return cls(stored["bands"], stored["scale"], stored["offset"])

    def to_json(self) -> dict:
        if self.legacy_clip:
            raise ValueError("the legacy normalisation is implied by a missing record, never stored")
        return {"bands": list(self.bands), "scale": list(self.scale), "offset": list(self.offset)}

    def select(self, data: np.ndarray, band_names: Sequence[str | None] | None) -> np.ndarray:
        """This normalisation's bands of a (C,H,W) tile whose bands are named `band_names`."""
        names = list(band_names or [])
        if not any(names):  # an unnamed raster: only usable when it has exactly our bands
            if data.shape[0] != len(self.bands):
                raise ValueError(
                    f"a raster without band names has {data.shape[0]} bands; the model expects {list(self.bands)}"
                )
            return data
        missing = [b for b in self.bands if b not in names]
        if missing:
            raise ValueError(f"the imagery has bands {names}; the model needs {list(self.bands)} (missing {missing})")
        return data[[names.index(b) for b in self.bands]]

    def apply(self, data: np.ndarray) -> np.ndarray:
        """(C,H,W) or (N,C,H,W) DN of this normalisation's bands, in order -> float32 model input."""
        if self.legacy_clip:
            return normalize(data)
        out = np.asarray(data, dtype=np.float32).copy()
        nodata = ~np.isfinite(out).all(axis=-3) | (out == 0).any(axis=-3)
        out *= np.asarray(self.scale, dtype=np.float32)[:, None, None]
        out += np.asarray(self.offset, dtype=np.float32)[:, None, None]
        np.copyto(out, np.float32(0.0), where=np.expand_dims(nodata, -3))
        return out

    def __call__(self, data: np.ndarray, band_names: Sequence[str | None] | None = None) -> np.ndarray:
        return self.apply(self.select(data, band_names))


class BandMoments:
    """Per-band sums over valid pixels, added tile by tile: a normalisation fitted without holding the tiles.

    Added in the tiles' order, the sums (float64) are those `Normalisation.fit` takes over the whole list."""

    def __init__(self, bands: int) -> None:
        self.total = np.zeros(bands)
        self.squares = np.zeros(bands)
        self.count = 0

    @staticmethod
    def of(image: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
        """One (C,H,W) DN tile's sums, squares and count over its valid pixels (no band 0)."""
        pixels = image[:, (image != 0).all(axis=0)].astype(np.float64)
        return pixels.sum(axis=1), (pixels**2).sum(axis=1), pixels.shape[1]

    def add(self, total: np.ndarray, squares: np.ndarray, count: int) -> None:
        self.total += total
        self.squares += squares
        self.count += count

    def normalisation(self, bands: Sequence[str]) -> Normalisation:
        if self.count == 0:
            raise ValueError("no valid pixels to fit a normalisation on (every pixel has no data)")
        mean = self.total / self.count
        std = np.sqrt(np.maximum(self.squares / self.count - mean**2, 0.0))
        std = np.where(std > 1e-6 * np.maximum(np.abs(mean), 1.0), std, 1.0)  # a constant band: only centred
        return Normalisation(tuple(bands), tuple(1.0 / std), tuple(-mean / std))
