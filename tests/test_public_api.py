"""The public modules of geo_assets, those `resources` (the layer above the pure code) imports from,
and the code location's entry, declare `__all__`: each listed name imports, and each name `resources`
takes from them is listed."""

import ast
import importlib
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

PUBLIC = [
    "geo_assets.config",
    "geo_assets.definitions",
    "geo_assets.geo.arrivals",
    "geo_assets.geo.leases",
    "geo_assets.geo.retries",
    "geo_assets.geo.stac",
    "geo_assets.geo.store",
    "geo_assets.engine.threads",
    "geo_assets.engine.batches",
    "geo_assets.engine.jobs",
    "geo_assets.engine.ledger",
    "geo_assets.limits",
    "geo_assets.ml.versions",
    "geo_assets.settings",
]


def _taken_by_resources() -> dict[str, set[str]]:
    """{module: names taken} of each `from geo_assets... import ...` in resources/; an imported
    submodule (`from geo_assets.geo import leases`) counts as that module, with no names."""
    taken: dict[str, set[str]] = {}
    for path in sorted((ROOT / "resources").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.ImportFrom) and (node.module or "").startswith("geo_assets")):
                continue
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                if importlib.util.find_spec(node.module).submodule_search_locations and importlib.util.find_spec(
                    submodule
                ):
                    taken.setdefault(submodule, set())
                else:
                    taken.setdefault(node.module, set()).add(alias.name)
    return taken


@pytest.mark.parametrize("module", PUBLIC)
def test_every_listed_name_imports(module):
    names = importlib.import_module(module).__all__
    assert names and len(set(names)) == len(names), f"{module}.__all__ is empty or lists a name twice"
    namespace: dict = {}
    exec(f"from {module} import {', '.join(names)}", namespace)  # the statement a user writes
    assert set(names) <= set(namespace)


def test_what_resources_imports_is_public():
    """Every geo_assets module resources imports from is in PUBLIC and lists each name it takes (but a
    private one, with a leading underscore: a defect of its own, not an omission of __all__)."""
    taken = _taken_by_resources()
    assert "geo_assets.geo.store" in taken, "the parse found resources' imports from geo_assets"
    assert set(taken) <= set(PUBLIC), f"resources imports from {sorted(set(taken) - set(PUBLIC))}: not in PUBLIC"
    for module, names in taken.items():
        missing = {n for n in names if not n.startswith("_")} - set(importlib.import_module(module).__all__)
        assert not missing, f"resources imports {sorted(missing)} from {module}, whose __all__ does not list them"
