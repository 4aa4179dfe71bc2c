"""An acquisition's variants side by side, the choice of one, and manifests of the earlier layout."""

import pytest

from geo_assets.geo.acquisitions import imagery_dates, imagery_key, legacy_imagery_key, pick_imagery, variant
from geo_assets.geo.store import Store, local_root

SIX = ["blue", "green", "red", "nir", "swir1", "swir2"]
FOUR = ["blue", "green", "red", "nir"]


def _cut(store, source, tile_size, bands, key=None):
    manifest = {"source": source, "tile_size": tile_size, "bands": bands, "tiles": []}
    store.write_json(key or imagery_key("farm", "2024-06-01", variant(source, tile_size, bands)), manifest)
    return manifest


@pytest.fixture
def store(tmp_path):
    return Store(local_root(tmp_path / "storage"))


def test_the_variant_holding_the_models_bands_is_chosen(store):
    _cut(store, "synthetic", 256, SIX)
    _cut(store, "synthetic", 256, FOUR)
    _cut(store, "synthetic", 64, FOUR)
    assert pick_imagery(store, "farm", "2024-06-01", bands=SIX)[1]["bands"] == SIX
    assert pick_imagery(store, "farm", "2024-06-01", bands=["red", "green", "blue"])[
        1
    ] == {  # fewest extra, then 256 px
        "source": "synthetic",
        "tile_size": 256,
        "bands": FOUR,
        "tiles": [],
    }
    assert pick_imagery(store, "farm", "2024-06-01", bands=FOUR, tile_size=64)[1]["tile_size"] == 64
    assert pick_imagery(store, "farm", "2024-06-01", widest=True)[1]["bands"] == SIX
    with pytest.raises(
        FileNotFoundError,
        match=r"with bands swir1, tile size 64 px; stored variants: synthetic 256 px \[blue, green, red, nir, swir1, swir2\]",
    ):
        pick_imagery(store, "farm", "2024-06-01", bands=["swir1"], tile_size=64)
    assert imagery_dates(store, "farm") == ["2024-06-01"]


def test_a_tie_is_refused_naming_the_variants(store):
    _cut(store, "synthetic", 64, FOUR)
    _cut(store, "synthetic", 128, FOUR)
    with pytest.raises(
        ValueError,
        match=r"2 variants that fit equally \(synthetic 128 px .*; synthetic 64 px .*\): choose one with the tile_size or source",
    ):
        pick_imagery(store, "farm", "2024-06-01", bands=FOUR)


def test_a_manifest_of_the_earlier_layout_is_read_as_the_variant_it_names(store):
    old = _cut(store, "synthetic", 256, SIX, key=legacy_imagery_key("farm", "2024-06-01"))
    _cut(store, "synthetic", 256, FOUR)
    assert pick_imagery(store, "farm", "2024-06-01", bands=SIX) == (legacy_imagery_key("farm", "2024-06-01"), old)
    assert imagery_dates(store, "farm") == ["2024-06-01"]
    # Cut again in the current layout: that manifest is the variant's, the old one no longer read.
    new = {**_cut(store, "synthetic", 256, SIX), "tiles": []}
    key, found = pick_imagery(store, "farm", "2024-06-01", bands=SIX)
    assert key == imagery_key("farm", "2024-06-01", variant("synthetic", 256, SIX)) and found == new
