"""The wheel holds the runtime only: the code location, its resources and sample data, and none of
the dev tooling (cloud stand-ins, the sample builder, the cloud demo), tests or benchmarks.

It is built the way the images build it (deploy/Dockerfile: `pip wheel --no-deps` over the build
context), from a copy of this checkout's files that git tracks or would track.
"""

from __future__ import annotations

import zipfile


def test_wheel_holds_the_runtime_and_no_dev_tooling(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names}
    assert top == {"geo_assets", "resources", wheel.name.split("-py3")[0] + ".dist-info"}, top
    for banned in ("emulators", "devtools", "tests", "bench", "sample_build", "stac_data", "conftest"):
        assert not [n for n in names if banned in n], banned
    for needed in (
        "geo_assets/definitions.py",
        "geo_assets/geo/sample.py",
        "resources/profiles.py",
        "geo_assets/data/sample/s2_sample.tif",
        "geo_assets/data/sample/PROVENANCE.md",
        "geo_assets/data/spectra.csv",
    ):
        assert needed in names
