"""Regions: slug names, dates, footprints and the catalogue kept in a Store."""

from __future__ import annotations

import json

import pytest

from geo_assets.geo.regions import (
    CATALOGUE_KEY,
    Region,
    RegionCatalogue,
    UnknownRegionError,
    builtin_regions,
    load_catalogue,
    save_catalogue,
    validate_date,
    validate_region_name,
)

BUILTINS = {"synth-train-a", "synth-train-b", "synth-holdout", "s2-sample", "landsat-sample"}
BBOX = (500000.0, 5000000.0, 510240.0, 5010240.0)


def _region(name="my-lake", bbox=BBOX, crs="EPSG:32631", **kw) -> Region:
    return Region(name=name, bbox=bbox, crs=crs, **kw)


@pytest.mark.parametrize("name", ["a", "0", "lake-2", "a-b-c", "s2-sample", "x" * 63, "a" + "-" * 61 + "b", "2024"])
def test_valid_slugs_accepted(name):
    assert validate_region_name(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        "A",
        "Lake",
        "-a",
        "a-",
        "-",
        "a_b",
        "a/b",
        "..",
        ".",
        "a.b",
        "a,b",
        "a b",
        "a\nb",
        "a\n",
        "\na",
        "é",
        "x" * 64,
        "../etc",
    ],
)
def test_invalid_slugs_refused(name):
    with pytest.raises(ValueError, match=r"lowercase letters, digits and hyphens") as err:
        validate_region_name(name)
    assert repr(name) in str(err.value)


@pytest.mark.parametrize("name", [None, 3, b"lake", ["lake"]])
def test_non_string_names_refused(name):
    with pytest.raises(ValueError, match="lowercase"):
        validate_region_name(name)


@pytest.mark.parametrize("date", ["2024-01-01", "2024-02-29", "1999-12-31"])
def test_valid_dates(date):
    assert validate_date(date) == date


@pytest.mark.parametrize(
    "date, why",
    [
        ("2024-13-01", "not a calendar date"),
        ("2023-02-29", "not a calendar date"),
        ("2024-00-10", "not a calendar date"),
        ("2024/01/01", "use YYYY-MM-DD"),
        ("20240101", "use YYYY-MM-DD"),
        ("2024-1-1", "use YYYY-MM-DD"),
        ("2024-01-01\n", "use YYYY-MM-DD"),
        ("2024-01-01T00:00", "use YYYY-MM-DD"),
        ("", "use YYYY-MM-DD"),
        (20240101, "use YYYY-MM-DD"),
    ],
)
def test_invalid_dates_refused(date, why):
    with pytest.raises(ValueError) as err:
        validate_date(date)
    assert str(err.value) == f"invalid acquisition date {date!r}: {why}"


def test_region_normalises_fields():
    r = _region(bbox=[500000, 5000000, 510240, 5010240], dates=["2024-06-01"])
    assert r.bbox == BBOX and all(isinstance(v, float) for v in r.bbox)
    assert r.dates == ("2024-06-01",)
    assert (r.source, r.labels) == ("synthetic", None)
    assert Region(**r.to_json()) == r  # to_json round-trips
    assert json.loads(json.dumps(r.to_json()))["bbox"] == list(BBOX)


def test_region_refuses_geographic_crs():
    with pytest.raises(ValueError, match=r"'EPSG:4326' is not projected"):
        _region(bbox=(2.0, 48.0, 3.0, 49.0), crs="EPSG:4326")


def test_region_refuses_invalid_crs():
    with pytest.raises(ValueError, match=r"invalid CRS 'EPSG:0'"):
        _region(crs="EPSG:0")


@pytest.mark.parametrize(
    "bbox",
    [
        (510240.0, 5000000.0, 500000.0, 5010240.0),
        (500000.0, 5010240.0, 510240.0, 5000000.0),
        (500000.0, 5000000.0, 500000.0, 5010240.0),
    ],
)
def test_region_refuses_inverted_or_empty_bbox(bbox):
    with pytest.raises(ValueError, match=r"region 'my-lake': bbox .* must be minx < maxx and miny < maxy"):
        _region(bbox=bbox)


def test_region_refuses_bad_name_and_dates():
    with pytest.raises(ValueError, match="lowercase"):
        _region(name="My_Lake")
    with pytest.raises(ValueError, match="'2024-13-01'"):
        _region(dates=("2024-06-01", "2024-13-01"))


def test_builtin_regions(regions):
    assert set(regions) == BUILTINS
    for name, r in regions.items():
        assert r.name == name
        assert r.dates, name
        assert r.source in ("synthetic", "sample")
    assert regions["landsat-sample"].crs == "EPSG:32621" and regions["landsat-sample"].bbox[3] < 0
    assert regions["landsat-sample"].labels == "polygons"
    assert regions["s2-sample"].labels is None
    assert {regions[n].labels for n in ("synth-train-a", "synth-train-b", "synth-holdout")} == {"synthetic"}
    # The synthetic regions are 1024 x 1024 px at 10 m and do not overlap.
    synth = [regions[n].bbox for n in ("synth-train-a", "synth-train-b", "synth-holdout")]
    for b in synth:
        assert (b[2] - b[0], b[3] - b[1]) == (10240.0, 10240.0)
    for i, a in enumerate(synth):
        for b in synth[i + 1 :]:
            assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1]


def test_catalogue_contains_builtins_sorted():
    cat = RegionCatalogue()
    assert set(cat.names()) == BUILTINS
    assert cat.names() == sorted(cat.names())
    assert [r.name for r in cat] == cat.names()
    assert cat.get("s2-sample") == builtin_regions()["s2-sample"]


def test_unknown_region_error_lists_known_and_how_to_add():
    cat = RegionCatalogue([_region()])
    with pytest.raises(UnknownRegionError) as err:
        cat.get("nowhere")
    msg = str(err.value)
    assert "unknown region 'nowhere'" in msg
    for name in BUILTINS | {"my-lake"}:
        assert name in msg
    assert "geo-assets region add" in msg
    assert isinstance(err.value, ValueError)


def test_get_validates_the_name_first():
    with pytest.raises(ValueError, match="lowercase") as err:
        RegionCatalogue().get("../etc")
    assert not isinstance(err.value, UnknownRegionError)


def test_add_and_replace_semantics():
    cat = RegionCatalogue()
    lake = _region(dates=("2024-06-01",))
    cat.add(lake)
    assert cat.get("my-lake") == lake
    cat.add(_region(dates=("2024-06-01",)))  # the same region again: a no-op, not an error
    moved = _region(bbox=(600000.0, 5000000.0, 610000.0, 5010000.0))
    with pytest.raises(ValueError, match=r"'my-lake' already exists with another footprint; pass --replace"):
        cat.add(moved)
    assert cat.get("my-lake") == lake  # refused add changed nothing
    cat.add(moved, replace=True)
    assert cat.get("my-lake") == moved
    # Built-ins are protected the same way.
    with pytest.raises(ValueError, match="already exists"):
        cat.add(_region(name="synth-train-a"))
    assert cat.get("synth-train-a") == builtin_regions()["synth-train-a"]


def test_user_json_holds_only_user_and_changed_regions():
    cat = RegionCatalogue()
    assert json.loads(cat.user_json()) == {"regions": []}
    cat.add(builtin_regions()["s2-sample"])  # identical to the built-in: not a user region
    cat.add(_region(name="zz-top"))
    cat.add(_region(name="aa-first"))
    names = [r["name"] for r in json.loads(cat.user_json())["regions"]]
    assert names == ["aa-first", "zz-top"]
    cat.add(_region(name="synth-holdout"), replace=True)  # an overridden built-in is kept
    names = [r["name"] for r in json.loads(cat.user_json())["regions"]]
    assert names == ["aa-first", "synth-holdout", "zz-top"]


def test_save_load_round_trip_through_store(store):
    empty = load_catalogue(store)  # nothing stored yet: built-ins only
    assert set(empty.names()) == BUILTINS
    assert not store.exists(CATALOGUE_KEY)

    cat = RegionCatalogue()
    lake = _region(source="synthetic", labels="synthetic", dates=("2024-06-01", "2024-07-01"))
    south = _region(name="south", bbox=(732000.0, -2816010.0, 748020.0, -2790000.0), crs="EPSG:32621")
    cat.add(lake)
    cat.add(south)
    save_catalogue(store, cat)
    assert store.exists(CATALOGUE_KEY)
    stored = store.read_json(CATALOGUE_KEY)
    assert sorted(r["name"] for r in stored["regions"]) == ["my-lake", "south"]  # no built-ins stored

    loaded = load_catalogue(store)
    assert loaded.names() == sorted(BUILTINS | {"my-lake", "south"})
    assert len(loaded.names()) == len(set(loaded.names()))
    assert loaded.get("my-lake") == lake and loaded.get("south") == south
    assert all(loaded.get(n) == builtin_regions()[n] for n in BUILTINS)

    # Save again after loading: nothing duplicated, identical text.
    save_catalogue(store, loaded)
    assert store.read_json(CATALOGUE_KEY) == stored
    assert [r.name for r in load_catalogue(store)] == loaded.names()


def test_from_json_empty_and_missing_regions():
    assert set(RegionCatalogue.from_json(None).names()) == BUILTINS
    assert set(RegionCatalogue.from_json("").names()) == BUILTINS
    assert set(RegionCatalogue.from_json("{}").names()) == BUILTINS


def test_from_json_validates_stored_regions():
    bad = json.dumps({"regions": [{"name": "Bad_Name", "bbox": list(BBOX), "crs": "EPSG:32631"}]})
    with pytest.raises(ValueError, match="lowercase"):
        RegionCatalogue.from_json(bad)
