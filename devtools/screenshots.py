"""The README's picture of the asset graph, taken from the real Dagster UI.

    .venv/bin/python -m devtools.screenshots [--home .dagster_home] [--out docs/images/asset-graph.png]

Serves the code location with `dagster dev` on the given Dagster home (after `make demo`, its
materialisations show on each asset), opens the global asset lineage in Debian's Chromium
(devtools/chromium.py), expands every group and saves the picture.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from devtools import chromium
from devtools.dagster_dev import ROOT, dagster_dev, graphql

ASSETS = (
    "imagery_tiles",
    "labels",
    "training_set",
    "evaluation_set",
    "trained_model",
    "model_evaluation",
    "predictions",
    "region_report",
)


def asset_graph(home: Path, out: Path) -> Path:
    env = {**os.environ, "DAGSTER_HOME": str(home.resolve())}
    with tempfile.TemporaryDirectory() as tmp, dagster_dev(env, Path(tmp) / "dev.log") as url:
        base = url.removesuffix("/graphql")
        graphql(url, "mutation { setNuxSeen }")  # the welcome dialog of a first visit would cover the graph
        with chromium.headless(chromium.install()) as browser:
            page = browser.new_page(viewport={"width": 1600, "height": 900})
            page.goto(f"{base}/asset-groups")
            page.get_by_role("button", name="Materialize all").wait_for()
            page.get_by_text("Global asset lineage").click()  # focus the graph: its shortcuts are off in inputs
            page.keyboard.press("Alt+e")  # expand every group, then fit the graph to the view
            for asset in ASSETS:
                page.locator("[class*=AssetNode_assetName]").get_by_text(asset, exact=True).wait_for()
            page.wait_for_timeout(1000)  # the fit animation
            out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(out))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--home", type=Path, default=ROOT / ".dagster_home", help="the Dagster home (default: make demo's)"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images" / "asset-graph.png")
    args = parser.parse_args(argv)
    if not (args.home / "dagster.yaml").exists():
        parser.error(f"{args.home} holds no dagster.yaml: run `make demo` first, or name a Dagster home with --home")
    print(asset_graph(args.home, args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
