"""Dev tool: (re)build the per-class reflectance library the synthetic scenes draw from.

    python -m devtools.spectra_build /path/to/unpacked/earthlib [--out geo_assets/data/spectra.csv]

Reads the spectral library shipped in the PyPI package `earthlib==1.1.0` (MIT; `earthlib/data/
spectra.sli` with its ENVI header and `spectra.csv` metadata: ICRAF-ISRIC soil spectra, UCSB
urban material spectra measured with an ASD, PROSAIL-simulated canopies), averages each
spectrum over the Sentinel-2A band passes (centre +- FWHM / 2) of our six bands, and keeps an
evenly spread subset per class (sorted by brightness). Water and cloud have no measured spectra
there; they get a few typical values, marked as such. Get the wheel with
`pip download --no-deps earthlib==1.1.0` and unzip it. The runtime reads only the CSV written here.
"""

from __future__ import annotations

import argparse
import csv
import re
import sys
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parents[1] / "geo_assets" / "data" / "spectra.csv"
BANDS = {  # Sentinel-2A centre and FWHM, micrometres (B02, B03, B04, B08, B11, B12)
    "blue": (0.492, 0.066),
    "green": (0.560, 0.036),
    "red": (0.665, 0.031),
    "nir": (0.833, 0.106),
    "swir1": (1.614, 0.091),
    "swir2": (2.202, 0.175),
}
PER_CLASS = 64
# earthlib (LEVEL_2, LEVEL_3) -> our class. Paint, glass, manholes and "other"/"mixed" are left out
# (single materials that no 10 m pixel is made of), and so are clay tiles, wood shingles, gravel and
# driveways: spectrally they are soil or wood, and a 10 m pixel of them cannot be told from one.
CLASSES = {
    "vegetation": [("vegetation", "canopy")],
    "built-up": [
        ("built", m)
        for m in ("road", "comp_shingle", "parking_lot", "sidewalk", "concrete_tile", "asphalt", "metal", "bridge")
    ],
    "bare-soil": [("bare", m) for m in ("soil", "sand", "dirt", "gravel")],
}
# Typical surface reflectance x 10000, not measured spectra (none in the library): clear, dark,
# green (algae) and turbid water; thick and thinner cloud.
TYPICAL = {
    "water": [
        [420, 360, 210, 110, 50, 30],
        [260, 240, 150, 80, 40, 30],
        [480, 760, 480, 380, 80, 50],
        [780, 980, 900, 360, 110, 60],
    ],
    "cloud": [
        [6800, 6900, 7100, 7400, 4800, 3700],
        [5200, 5300, 5400, 5600, 4200, 3100],
        [7800, 7900, 8000, 8100, 5200, 4000],
    ],
}


def build(earthlib: Path, out: Path = OUT) -> Path:
    data_dir = earthlib / "earthlib" / "data" if (earthlib / "earthlib").is_dir() else earthlib
    header = (data_dir / "spectra.sli.hdr").read_text()
    wavelengths = np.array([float(v) for v in re.search(r"wavelength = \{([^}]*)\}", header).group(1).split(",")])
    lines, samples = (int(re.search(rf"{k} = (\d+)", header).group(1)) for k in ("lines", "samples"))
    if "data type = 4" not in header or "byte order = 0" not in header:
        raise SystemExit("spectra.sli is not little-endian float32 as expected")
    spectra = np.fromfile(data_dir / "spectra.sli", dtype="<f4").reshape(lines, samples)
    meta = list(csv.DictReader(open(data_dir / "spectra.csv", encoding="utf-8")))
    if len(meta) != lines:
        raise SystemExit(f"spectra.csv has {len(meta)} rows for {lines} spectra")
    passes = np.stack(
        [(wavelengths >= c - w / 2 - 1e-9) & (wavelengths <= c + w / 2 + 1e-9) for c, w in BANDS.values()]
    )
    banded = spectra @ passes.T / passes.sum(axis=1)  # mean reflectance over each band pass
    rows = []
    for cls, kinds in CLASSES.items():
        idx = [i for i, m in enumerate(meta) if (m["LEVEL_2"], m["LEVEL_3"]) in kinds and np.isfinite(banded[i]).all()]
        chosen = np.array(idx)[np.argsort(banded[idx].sum(axis=1), kind="stable")]
        chosen = chosen[np.linspace(0, len(chosen) - 1, PER_CLASS).round().astype(int)]  # spread over brightness
        for i in chosen:
            rows.append(
                [cls, meta[i]["NAME"], meta[i]["SOURCE"], *np.clip(np.rint(banded[i] * 10000), 1, 10000).astype(int)]
            )
    for cls, values in TYPICAL.items():
        rows += [[cls, f"typical-{cls}-{k}", "typical value (not measured)", *v] for k, v in enumerate(values)]
    with open(out, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["class", "name", "source", *BANDS])
        w.writerows(rows)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("earthlib", type=Path, help="the unpacked earthlib 1.1.0 wheel (or its earthlib/data folder)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    print(build(args.earthlib, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
