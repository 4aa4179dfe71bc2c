"""A DAGSTER_HOME and a local store whose catalogue holds the given regions, with the resources that cut
their imagery and labels in-process: the set-up of the end-to-end tests that then launch real runs."""

from __future__ import annotations

from pathlib import Path

from geo_assets.geo.regions import Region, load_catalogue, save_catalogue
from geo_assets.geo.store import Store, local_root
from resources.compute import LocalPoolCompute
from resources.gate import ModelGate
from resources.imagery import ImageryResource
from resources.storage import ManifestIOManager, StorageResource

ROOT = Path(__file__).resolve().parents[1]


def local_world(tmp_path: Path, monkeypatch, regions: list[Region]) -> tuple[Path, Store, dict]:
    """(DAGSTER_HOME with the project's dagster.yaml, the store, resources for dg.materialize)."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text((ROOT / "dagster.yaml").read_text())
    store = Store(local_root(tmp_path / "storage"))
    catalogue = load_catalogue(store)
    for region in regions:
        catalogue.add(region)
    save_catalogue(store, catalogue)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    storage = StorageResource(root=store.root)
    resources = {
        "storage": storage,
        "compute": LocalPoolCompute(workers=2),
        "imagery": ImageryResource(),
        "gate": ModelGate(),  # imagery_tiles reads the model a run predicts with, to cut its bands
        "io_manager": ManifestIOManager(storage=storage),
    }
    return home, store, resources
