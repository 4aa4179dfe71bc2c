"""A transparent spectral-index reference to set beside a model's class shares.

Per pixel, the first rule whose bands the imagery has and whose index passes its threshold:

    water       MNDWI = (green - swir1) / (green + swir1) > 0     (Xu 2006; needs swir1)
                else NDWI = (green - nir) / (green + nir) > 0      (McFeeters 1996; needs nir)
    vegetation  NDVI = (nir - red) / (nir + red) > 0.3             (needs nir)
                else GRVI = (green - red) / (green + red) > 0      (Motohka et al. 2010; visible bands only)
    bare soil   BSI = ((swir1 + red) - (nir + blue)) / ((swir1 + red) + (nir + blue)) > 0
                and NDVI < 0.2                                     (Rikimaru et al. 2002; needs swir1, nir)
    other       everything else: built-up, sparse or mixed cover, which these indices do not separate

A rule whose bands are missing is skipped (and the reference says so); pixels with no data
belong to no class. Indices are computed on reflectance (uint16 x 10000, 0 = no data).
"""

from __future__ import annotations

import numpy as np

from geo_assets.geo.landcover import IGNORE

REFERENCE_CLASSES = ("water", "vegetation", "bare-soil", "other")
THRESHOLDS = {"MNDWI": 0.0, "NDWI": 0.0, "NDVI": 0.3, "GRVI": 0.0, "BSI": 0.0, "BSI_MAX_NDVI": 0.2}

# (reference class, index, needed bands): tried in this order, the first usable rule of a class counts.
RULES = (
    ("water", "MNDWI", ("green", "swir1")),
    ("water", "NDWI", ("green", "nir")),
    ("vegetation", "NDVI", ("nir", "red")),
    ("vegetation", "GRVI", ("green", "red")),
    ("bare-soil", "BSI", ("swir1", "red", "nir", "blue")),
)


def _nd(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(a + b > 0, (a - b) / (a + b), 0.0)


def index(name: str, bands: dict[str, np.ndarray]) -> np.ndarray:
    b = {k: v.astype(np.float64) for k, v in bands.items()}
    if name == "MNDWI":
        return _nd(b["green"], b["swir1"])
    if name == "NDWI":
        return _nd(b["green"], b["nir"])
    if name == "NDVI":
        return _nd(b["nir"], b["red"])
    if name == "GRVI":
        return _nd(b["green"], b["red"])
    if name == "BSI":
        return _nd(b["swir1"] + b["red"], b["nir"] + b["blue"])
    raise ValueError(f"unknown index {name!r}")


def rules_for(band_names: list[str]) -> list[tuple[str, str]]:
    """(reference class, index) rules usable with these bands: one per class at most."""
    chosen: dict[str, str] = {}
    for cls, name, needs in RULES:
        if cls not in chosen and all(b in band_names for b in needs):
            chosen[cls] = name
    return list(chosen.items())


def reference_classes(data: np.ndarray, band_names: list[str]) -> np.ndarray:
    """(rows, cols) uint8: index into REFERENCE_CLASSES, IGNORE where any band has no data."""
    bands = {name: data[i] for i, name in enumerate(band_names)}
    out = np.full(data.shape[1:], REFERENCE_CLASSES.index("other"), dtype=np.uint8)
    assigned = np.zeros(data.shape[1:], dtype=bool)
    for cls, name in rules_for(band_names):
        hit = index(name, bands) > THRESHOLDS[name]
        if name == "BSI":
            hit &= index("NDVI", bands) < THRESHOLDS["BSI_MAX_NDVI"]
        hit &= ~assigned
        out[hit] = REFERENCE_CLASSES.index(cls)
        assigned |= hit
    out[(data == 0).any(axis=0)] = IGNORE
    return out


def describe(band_names: list[str]) -> str:
    """The rules used for these bands, with thresholds, in one line (for reports)."""
    used = rules_for(band_names)
    text = "; ".join(
        f"{cls}: {name} > {THRESHOLDS[name]:g}"
        + (f" and NDVI < {THRESHOLDS['BSI_MAX_NDVI']:g}" if name == "BSI" else "")
        for cls, name in used
    )
    missing = [c for c in REFERENCE_CLASSES[:-1] if c not in dict(used)]
    if missing:
        text += f"; no rule for {', '.join(missing)} (the imagery lacks the bands)"
    return text + "; other: the rest"
