"""Every GEO_ASSETS_* setting is declared once (geo_assets/settings.py), read through its accessor, and the
docs' settings tables are the declarations: the code and docs are grepped as they are, and the commands a
maintainer runs (`python -m geo_assets.settings --markdown`, `python -m devtools.settings_docs --check`) run."""

import os
import re
import subprocess
import sys

import pytest

from devtools import docs, settings_docs
from geo_assets import settings
from geo_assets.settings import SETTINGS, SettingError, by_name

NAME = re.compile(r"\bGEO_ASSETS_[A-Z0-9_]*[A-Z0-9]\b")
SOURCES = ("geo_assets", "resources")  # the runtime: what a deployment's processes read


def _names_in_code() -> dict[str, list[str]]:
    """Each GEO_ASSETS_ name written in the runtime's source (outside the declarations) -> where."""
    found: dict[str, list[str]] = {}
    for folder in SOURCES:
        for path in sorted((docs.ROOT / folder).rglob("*.py")):
            if path == docs.ROOT / "geo_assets" / "settings.py":
                continue
            for number, line in enumerate(path.read_text().splitlines(), 1):
                for name in NAME.findall(line):
                    found.setdefault(name, []).append(f"{path.relative_to(docs.ROOT)}:{number}")
    return found


def test_every_setting_the_code_names_is_declared_and_every_declared_one_is_read():
    declared = {s.name for s in SETTINGS}
    named = _names_in_code()
    undeclared = {name: where for name, where in named.items() if name not in declared}
    assert not undeclared, f"GEO_ASSETS_ names in the code but not in geo_assets/settings.py: {undeclared}"
    unread = sorted(declared - set(named))
    assert not unread, f"declared in geo_assets/settings.py but read nowhere: {unread}"


def test_the_code_reads_no_setting_from_the_environment_itself():
    """A setting read with os.environ/os.getenv skips its type and bounds: the accessor is the one way in."""
    direct = re.compile(r"os\.(environ|getenv)\b[^\n]*GEO_ASSETS_|GEO_ASSETS_[A-Z_]*\"?\s*\+")
    offenders = [
        f"{path.relative_to(docs.ROOT)}:{n}"
        for folder in SOURCES
        for path in sorted((docs.ROOT / folder).rglob("*.py"))
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if direct.search(line)
    ]
    assert not offenders, offenders


def test_the_docs_tables_are_the_declarations():
    proc = subprocess.run(
        [sys.executable, "-m", "devtools.settings_docs", "--check"],
        cwd=docs.ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    blocks = settings_docs.blocks()
    assert {g: len(pages) for g, pages in blocks.items()} == dict.fromkeys(settings.GROUPS, 1), blocks
    pages = docs.text()
    for s in SETTINGS:  # each in one table, with its default and what it accepts
        row = f"| `{s.name}` | {s.default_text()} | {s.accepted()} | "
        assert len([line for line in pages.splitlines() if line.startswith(row)]) == 1, row


def test_the_check_names_a_page_whose_table_was_edited_by_hand(tmp_path, monkeypatch):
    page = docs.ROOT / "docs" / "operations" / "limits.md"
    edited = tmp_path / "limits.md"
    edited.write_text(page.read_text().replace("| `1800` |", "| `900` |"))
    monkeypatch.setattr(docs, "pages", lambda: [edited])
    assert settings_docs.stale() == [edited]
    assert settings_docs.main([]) == 0 and "| `1800` |" in edited.read_text()  # written back from the module
    assert settings_docs.stale() == []


def test_the_markdown_command_prints_a_groups_table():
    proc = subprocess.run(
        [sys.executable, "-m", "geo_assets.settings", "--markdown", "limits"],
        cwd=docs.ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("| variable | default | accepts | meaning |")
    assert "| `GEO_ASSETS_LEASE_WAIT_S` | `1800` | a whole number from 1 to 86,400 |" in proc.stdout
    refused = subprocess.run(
        [sys.executable, "-m", "geo_assets.settings", "--markdown", "nope"],
        cwd=docs.ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 2 and "unknown settings group 'nope'; accepted: profile," in refused.stderr


@pytest.mark.parametrize(
    ("name", "raw", "message"),
    [
        ("GEO_ASSETS_MAX_TILES", "0", "GEO_ASSETS_MAX_TILES='0': must be a whole number from 1 to 10,000,000"),
        ("GEO_ASSETS_MAX_TILES", "1e3", "GEO_ASSETS_MAX_TILES='1e3': must be a whole number from 1 to 10,000,000"),
        ("GEO_ASSETS_LEASE_WAIT_S", "2.5", "GEO_ASSETS_LEASE_WAIT_S='2.5': must be a whole number from 1 to 86,400"),
        ("GEO_ASSETS_MIN_MIOU", "nan", "GEO_ASSETS_MIN_MIOU='nan': must be a number from 0 to 1"),
        ("GEO_ASSETS_MAP_RATE", "inf", "GEO_ASSETS_MAP_RATE='inf': must be a number from 1 to 100,000"),
        ("GEO_ASSETS_ARRIVALS_REGISTER_REGIONS", "maybe", "GEO_ASSETS_ARRIVALS_REGISTER_REGIONS='maybe': must be true or false"),
        ("GEO_ASSETS_PROFILE", "azure", "unknown GEO_ASSETS_PROFILE='azure'; accepted: local, aws, gcp"),
    ],
)  # fmt: skip
def test_a_bad_value_is_refused_naming_the_variable_and_its_bounds(name, raw, message):
    with pytest.raises(SettingError) as refused:
        by_name(name).get({name: raw})
    assert str(refused.value) == message


def test_unset_or_empty_is_the_default_and_values_are_typed():
    tiles = by_name("GEO_ASSETS_MAX_TILES")
    assert tiles.get({}) == tiles.get({tiles.name: "  "}) == 10_000
    assert tiles.get({tiles.name: " 12 "}) == 12
    assert by_name("GEO_ASSETS_MIN_MIOU").get({"GEO_ASSETS_MIN_MIOU": "0.5"}) == 0.5
    assert by_name("GEO_ASSETS_ARRIVALS_REGISTER_REGIONS").get({"GEO_ASSETS_ARRIVALS_REGISTER_REGIONS": "Yes"}) is True
    regions = by_name("GEO_ASSETS_SCHEDULED_REGIONS")
    assert regions.get({regions.name: "a, b,,c"}) == ["a", "b", "c"]
    regions.get({}).append("changed")
    assert regions.get({}) == []  # the default is not shared
    with pytest.raises(KeyError, match="GEO_ASSETS_NOPE is not a declared setting"):
        by_name("GEO_ASSETS_NOPE")


def test_the_code_location_refuses_a_bad_setting_naming_it():
    """Through the path a deployment takes: loading the Definitions with a value out of bounds."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GEO_ASSETS_")}
    env.update(GEO_ASSETS_COMPUTE="dask", GEO_ASSETS_DASK_WORKERS="0", PYTHONPATH=str(docs.ROOT))
    proc = subprocess.run(
        [sys.executable, "-c", "import geo_assets.definitions"],
        cwd=docs.ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode != 0
    assert "GEO_ASSETS_DASK_WORKERS='0': must be a whole number from 1 to 1,024" in proc.stderr
