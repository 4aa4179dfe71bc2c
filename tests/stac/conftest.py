"""Real servers for the STAC sources: SeaweedFS (S3), Azurite (Azure Blob, installed with npm on
first use), three rustac STAC APIs, and the one fake (Planetary Computer's SAS token endpoint,
minting real SAS tokens for Azurite, see fake_pc.py). Started once per session; the catalogues
are built from the sample clips by devtools.emulators.stac_data."""

from __future__ import annotations

from contextlib import ExitStack

import pytest
from fake_pc import FakePlanetaryComputer  # tests/stac is on sys.path (rootdir-less test folders)
from stac_regions import ACCESS_KEY, L8_REGION, S2_REGION, SECRET_KEY, tiles  # noqa: F401

from devtools.emulators import stac_data
from devtools.emulators.azure import azurite
from devtools.emulators.s3 import seaweedfs
from devtools.emulators.stac import stac_api
from geo_assets.geo import stac
from geo_assets.geo.stac import HttpRetry, ImagerySettings


@pytest.fixture(scope="session")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("stac")


@pytest.fixture(scope="session")
def s3(workdir):
    with seaweedfs(workdir / "s3", ["sentinel-cogs", "usgs-landsat"], ACCESS_KEY, SECRET_KEY) as server:
        yield server


@pytest.fixture(scope="session")
def azure(workdir):
    with azurite(workdir / "azurite", [stac_data.PC_CONTAINER]) as server:
        yield server


@pytest.fixture(scope="session")
def pc(azure):
    with FakePlanetaryComputer(azure) as server:
        yield server


@pytest.fixture(scope="session")
def catalogues(workdir, s3, azure):
    es = stac_data.earth_search(workdir / "es", s3)
    l8 = stac_data.landsat(workdir / "l8", s3)
    pcat = stac_data.planetary_computer(workdir / "pc", azure)
    es.write(workdir / "earth-search-items.json")
    l8.write(workdir / "landsat-items.json")
    pcat.write(workdir / "pc-items.json")
    return {"earth-search": es, "landsat-c2": l8, "planetary-computer": pcat}


@pytest.fixture(scope="session")
def stac_urls(workdir, catalogues):
    with ExitStack() as stack:
        yield {name: stack.enter_context(stac_api(workdir, [cat.items_file])) for name, cat in catalogues.items()}


@pytest.fixture
def settings(s3, stac_urls, pc) -> ImagerySettings:
    stac.signing._TOKENS.clear()  # each test starts without cached SAS tokens
    return ImagerySettings(
        stac_urls=stac_urls,
        s3_endpoint=s3.endpoint_url,
        s3_region=s3.region,
        s3_no_sign=False,
        s3_access_key=ACCESS_KEY,
        s3_secret_key=SECRET_KEY,
        pc_token_url=pc.token_url,
        http=HttpRetry(retries=2, backoff_s=0.05, timeout_s=10.0),
    )
