"""The layers of the code run one way, read from the source's imports (every import statement, those
inside functions included): pure geospatial code, the tile engine and ML code (`geo_assets/geo`,
`geo_assets/engine`, `geo_assets/ml`, in that order) import no Dagster and nothing above them; `resources/` builds on the pure code and the config types only; the
runtime (`geo_assets/`, `resources/`) never imports dev tooling, benchmarks or tests; and no module
takes another's private (underscored) name."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RUNTIME = sorted([*ROOT.glob("geo_assets/**/*.py"), *ROOT.glob("resources/**/*.py")])
DEV = ("devtools", "bench", "tests")
# What each layer may import of this project's packages (a module's own package counts as itself).
PURE = ("geo_assets.geo", "geo_assets.engine", "geo_assets.ml", "geo_assets.settings", "geo_assets.limits")
# Inside the pure code, one way too: geo, then the tile engine (which takes the store only), then ml.
GEO = ("geo_assets.geo", "geo_assets.settings", "geo_assets.limits")
ENGINE = ("geo_assets.engine", "geo_assets.geo.store")
RESOURCES = (*PURE, "geo_assets.config", "resources")


def _imports(path: Path) -> list[tuple[int, str, list[str]]]:
    """(line, module, names) of each absolute import in `path`; `import a.b` has no names."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}:{node.lineno}: a relative import (the project imports absolutely)"
            found.append((node.lineno, node.module or "", [alias.name for alias in node.names]))
    return found


def _within(module: str, packages: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def _ours(module: str) -> bool:
    return _within(module, ("geo_assets", "resources", *DEV))


def _violations(paths: list[Path], allowed: tuple[str, ...], dagster: bool) -> list[str]:
    bad = []
    for path in paths:
        for line, module, _ in _imports(path):
            if (_ours(module) and not _within(module, allowed)) or (
                not dagster and module.split(".")[0].startswith("dagster")
            ):
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    return bad


def test_the_rules_see_the_imports():
    """The parse finds what the rules are about: a rule over no imports would pass whatever the code."""
    modules = {module for path in RUNTIME for _, module, _ in _imports(path)}
    assert {"dagster", "geo_assets.geo.store", "resources.profiles"} <= modules
    assert len(RUNTIME) > 80


def test_the_runtime_never_imports_dev_tooling():
    bad = [
        f"{path.relative_to(ROOT)}:{line} imports {module}"
        for path in RUNTIME
        for line, module, _ in _imports(path)
        if _within(module, DEV)
    ]
    assert not bad, "the installed package would need the checkout:\n" + "\n".join(bad)


@pytest.mark.parametrize("package, allowed", [("geo", GEO), ("engine", ENGINE), ("ml", PURE)])
def test_pure_code_imports_no_dagster_and_nothing_above_it(package, allowed):
    paths = sorted((ROOT / "geo_assets" / package).glob("**/*.py"))
    assert paths, package
    bad = _violations(paths, allowed, dagster=False)
    assert not bad, "\n".join(bad)


def test_resources_build_on_the_pure_code_and_the_config_types_only():
    bad = _violations(sorted((ROOT / "resources").glob("**/*.py")), RESOURCES, dagster=True)
    assert not bad, "resources import a layer above them (assets, sensors, definitions, the CLI):\n" + "\n".join(bad)


def test_the_assets_import_neither_the_cli_nor_the_triggers():
    """Assets are what the CLI and the triggers launch, not the other way round; the one thing an asset
    takes from `triggers/` is its automation condition, a module that imports nothing of the project's."""
    paths = sorted((ROOT / "geo_assets" / "assets").glob("**/*.py"))
    bad = [
        f"{path.relative_to(ROOT)}:{line} imports {module}"
        for path in paths
        for line, module, _ in _imports(path)
        if _within(module, ("geo_assets.cli", "geo_assets.triggers")) and module != "geo_assets.triggers.automation"
    ]
    assert not bad, "\n".join(bad)
    automation = ROOT / "geo_assets" / "triggers" / "automation.py"
    assert not [module for _, module, _ in _imports(automation) if _ours(module)]


def test_the_code_location_and_the_webserver_never_load_the_command():
    """The definitions (with the triggers) and the webserver take the launch checks and the GraphQL client
    from `geo_assets.cli`, never the command or the demo: read in a fresh interpreter, from what loaded."""
    import subprocess
    import sys

    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, geo_assets.definitions, geo_assets.webserver.health; "
            "print(' '.join(m for m in sys.modules if m.startswith('geo_assets.cli')))",
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    ).stdout.split()
    assert "geo_assets.cli.launches" in loaded  # the check sees what it is about
    assert not {"geo_assets.cli.commands", "geo_assets.cli.demo"} & set(loaded), loaded


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _module_names(path: Path) -> dict[str, str]:
    """{name: module} of the names `path` binds to one of this project's modules (`import a.b as c`,
    `from a import b` where a/b.py exists): `c._x` then reaches into that module."""
    modules = {".".join(p.relative_to(ROOT).with_suffix("").parts) for p in RUNTIME}
    bound = {}
    for _, module, names in _imports(path):
        if not _ours(module):
            continue
        for name in names:
            if f"{module}.{name}" in modules:
                bound[name] = f"{module}.{name}"
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname and alias.name in modules:
                    bound[alias.asname] = alias.name
    return bound


def test_no_module_takes_another_modules_private_name():
    """Neither imported (`from m import _x`) nor reached as an attribute of an imported module (`m._x`)."""
    bad = [
        f"{path.relative_to(ROOT)}:{line} takes {name} from {module}"
        for path in RUNTIME
        for line, module, names in _imports(path)
        if _ours(module)
        for name in names
        if _private(name)
    ]
    for path in RUNTIME:
        bound = _module_names(path)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and _private(node.attr):
                if isinstance(node.value, ast.Name) and node.value.id in bound:
                    bad.append(f"{path.relative_to(ROOT)}:{node.lineno} takes {node.attr} from {bound[node.value.id]}")
    assert not bad, "\n".join(bad)
