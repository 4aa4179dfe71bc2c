"""The Dagster UI in a real browser, as a user drives it: open the asset graph, materialise one
region x date partition of imagery_tiles + predictions + region_report with run config from the
launchpad, watch the run succeed, see region_report's preview image, and launch a backfill of two
dates for one region from the partition dialog."""

from __future__ import annotations

import base64
import datetime
import re
import time

import yaml
from ui_world import DATE, FIELD, MODEL

from devtools.dagster_dev import graphql
from geo_assets.cli.demo import only_output

ASSETS = ("imagery_tiles", "predictions", "region_report")
BACKFILL_DATES = ("2024-06-02", "2024-06-03")
# The launchpad's YAML editor takes the whole document at once (no per-key typing, so no auto-indent).
CONFIG = f"""ops:
  imagery_tiles:
    config:
      source: synthetic
      tile_size: 64
  predictions:
    config:
      model: {MODEL}
  region_report:
    config:
      model: {MODEL}
"""
RUN_TIMEOUT_MS = 300_000  # one partition on 2 busy cores: a step per process, each imports torch

RUN = """query Run($id: ID!) { runOrError(runId: $id) { ... on Run { status runConfigYaml tags { key value } } } }"""
BACKFILL = """
query Backfill($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    ... on PartitionBackfill {
      status partitionNames isAssetBackfill assetSelection { path }
      runs(limit: 10) { runId runConfigYaml tags { key value } }
    }
  }
}"""


def _tags(run: dict) -> dict[str, str]:
    return {t["key"]: t["value"] for t in run["tags"]}


def _open_asset_graph(page, base: str, shoot) -> str:
    """The global lineage filtered to the three assets, their groups expanded; returns its URL."""
    page.goto(f"{base}/asset-groups")
    page.get_by_role("button", name="Materialize all").wait_for()
    page.locator(".CodeMirror").click()  # the asset selection box
    page.keyboard.type(" or ".join(f"key:{a}" for a in ASSETS))
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/asset-groups~"))
    page.get_by_text("Global asset lineage").click()  # leave the selection box: shortcuts are off in inputs
    page.keyboard.press("Alt+e")  # expand all groups (the graph's ⌥E), then fit the graph to the view
    for asset in ASSETS:
        page.locator("[class*=AssetNode_assetName]").get_by_text(asset, exact=True).wait_for()
    shoot("asset-graph")
    return page.url


def _launchpad(page, config: str):
    """Open the launchpad, pick the partition and give the run config; returns the launchpad, once the
    config is checked."""
    materialize_menu = page.locator("button[class*=Button_filled]").filter(
        has=page.get_by_role("img", name="arrow_drop_down")
    )
    materialize_menu.click()
    page.get_by_role("menuitem", name="Open launchpad").click()
    launchpad = page.get_by_role("dialog").filter(has_text="Launchpad")
    partition = f"{DATE}|{FIELD.name}"
    launchpad.get_by_role("img", name="sort_by_alpha").wait_for()  # the picker has loaded the partitions
    launchpad.get_by_placeholder("Partition").fill(partition)
    page.get_by_role("menuitem", name=partition, exact=True).click()
    launchpad.get_by_text(f"partition/region: {FIELD.name}").wait_for()
    # Choosing a partition rewrites the editor with that partition's defaults: edit after it.
    launchpad.locator(".CodeMirror").click()
    page.keyboard.press("Control+a")
    page.keyboard.insert_text(config)
    page.get_by_text("Checking config").wait_for(state="hidden")
    return launchpad


def _materialise_from_launchpad(page, shoot, config: str = CONFIG) -> str:
    """Open the launchpad, pick the partition, give the run config, launch; returns the run id."""
    launchpad = _launchpad(page, config)
    launchpad.get_by_text("No errors").wait_for()
    shoot("launchpad")
    launchpad.get_by_role("button", name="Materialize").click()
    page.wait_for_url(re.compile(r"/runs/[0-9a-f-]{36}$"))
    return page.url.rsplit("/", 1)[1]


def _watch_run(page, graphql_url: str, run_id: str, shoot) -> dict:
    """The run page until it shows the run's end; returns the run as GraphQL reports it."""
    shoot("run-started")
    status = page.get_by_text(re.compile(r"^(Success|Failure|Canceled)$")).first
    status.wait_for(timeout=RUN_TIMEOUT_MS)
    shoot("run-ended")
    run = graphql(graphql_url, RUN, {"id": run_id})["runOrError"]
    assert status.inner_text() == "Success" and run["status"] == "SUCCESS", run
    return run


def _see_preview(page, base: str, stored_png: bytes, shoot) -> None:
    page.goto(f"{base}/assets/region_report")
    page.get_by_text(f"{DATE}|{FIELD.name}").first.wait_for()  # the latest materialisation
    shoot("region-report")
    preview_row = page.locator("tr", has=page.get_by_text("preview", exact=True))
    preview_row.get_by_text("[Show Markdown]").click()
    preview = page.get_by_role("dialog").filter(has_text=f"{FIELD.name}, {DATE}")
    image = preview.get_by_role("img", name="imagery and prediction")
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=image.element_handle())
    shoot("region-report-preview")
    width, height, src = image.evaluate("img => [img.naturalWidth, img.naturalHeight, img.src]")
    assert width > 0 and height > 0
    # The browser shows exactly the preview the asset stored (imagery beside prediction).
    assert base64.b64decode(src.split(",", 1)[1]) == stored_png
    preview.get_by_role("button", name="Close").click()


def _backfill_from_partition_dialog(page, graph_url: str, shoot) -> str:
    """Two dates of one region, with the same run config; returns the backfill id."""
    page.goto(graph_url)
    page.get_by_role("button", name="Materialize all").click()
    dialog = page.get_by_role("dialog").filter(has_text="Launch runs to materialize 3 assets")
    dates = dialog.get_by_placeholder(re.compile(r"^ex: "))
    dates.fill(f"[{BACKFILL_DATES[0]}...{BACKFILL_DATES[-1]}]")
    dates.press("Enter")
    dialog.get_by_text("Select a partition or create one").click()
    page.get_by_placeholder("Filter partitions").fill(FIELD.name)
    page.get_by_role("menuitem", name=re.compile(rf"^{FIELD.name}\b")).click()
    page.keyboard.press("Escape")  # close the region list, keep the dialog
    dialog.get_by_text(f"{len(BACKFILL_DATES)} partitions", exact=True).wait_for()
    dialog.get_by_text("Config", exact=True).click()
    dialog.get_by_role("button", name="Add config").click()
    editor = page.get_by_role("dialog").filter(has_text="Config Editor")
    editor.locator(".CodeMirror").click()
    page.keyboard.press("Control+a")
    page.keyboard.insert_text(CONFIG)
    page.get_by_text("Checking config").wait_for(state="hidden")
    editor.get_by_text("No errors").wait_for()
    editor.get_by_role("button", name="Save config").click()
    dialog.get_by_text("Config saved").wait_for()
    shoot("backfill-dialog")
    dialog.get_by_role("button", name="Launch backfill").click()
    toast = page.get_by_text(re.compile(r"^Created backfill"))
    toast.wait_for()
    backfill_id = toast.inner_text().split()[-1]
    shoot("backfill-launched")
    page.get_by_role("link", name="View", exact=True).click()  # the toast's link to the backfill page
    page.wait_for_url(re.compile(rf"/{backfill_id}"))
    page.get_by_text("Partition selection").wait_for()
    shoot("backfill-page")
    return backfill_id


def _see_backfill_runs(page, run_ids: list[str], shoot) -> None:
    """The backfill page's Runs tab lists the runs it requested (by their short ids)."""
    page.get_by_role("tab", name="Runs").click()
    for run_id in run_ids:
        page.get_by_text(run_id[:8], exact=True).wait_for()
    shoot("backfill-runs")


def _covered(run: dict) -> set[str]:
    """The partitions a backfill run materialises: its own, or a range of one region's dates when the
    assets take ranges in one run (BackfillPolicy.single_run)."""
    tags = _tags(run)
    if "dagster/partition" in tags:
        return {tags["dagster/partition"]}
    (first, region), (last, other) = (
        tags[f"dagster/asset_partition_range_{end}"].split("|") for end in ("start", "end")
    )
    assert region == other, tags
    start, stop = (datetime.date.fromisoformat(d) for d in (first, last))
    return {f"{start + datetime.timedelta(n)}|{region}" for n in range((stop - start).days + 1)}


def _backfill_with_runs(graphql_url: str, backfill_id: str, partitions: set[str], timeout: float = 180) -> dict:
    """The backfill once the daemon has requested runs covering `partitions` (it ticks every few seconds)."""
    deadline = time.time() + timeout
    while True:
        backfill = graphql(graphql_url, BACKFILL, {"id": backfill_id})["partitionBackfillOrError"]
        covered = set().union(*(_covered(r) for r in backfill["runs"]))
        if covered >= partitions or time.time() > deadline:
            return backfill
        time.sleep(1)


def test_materialise_see_the_preview_and_backfill_in_the_ui(server, page, shoot):
    graph_url = _open_asset_graph(page, server.base, shoot)

    run_id = _materialise_from_launchpad(page, shoot)
    run = _watch_run(page, server.graphql, run_id, shoot)
    tags = _tags(run)
    # The config typed in the launchpad is what ran: the named model, the chosen source and partition.
    assert tags["dagster/partition"] == f"{DATE}|{FIELD.name}"
    assert tags["geo-assets/region"] == FIELD.name and tags["geo-assets/source"] == "synthetic"
    assert tags["geo-assets/model"] == MODEL and tags["geo-assets/model-version"] == server.model_version

    report = server.store.read_json(
        only_output(server.store, "region_report", MODEL, server.model_version, FIELD.name, DATE)
    )
    stored = server.store.read_bytes(report["preview"])
    _see_preview(page, server.base, stored, shoot)

    backfill_id = _backfill_from_partition_dialog(page, graph_url, shoot)
    partitions = {f"{d}|{FIELD.name}" for d in BACKFILL_DATES}
    backfill = _backfill_with_runs(server.graphql, backfill_id, partitions)
    assert backfill["isAssetBackfill"] and set(backfill["partitionNames"]) == partitions, backfill
    assert sorted(a["path"][0] for a in backfill["assetSelection"]) == sorted(ASSETS)
    runs = backfill["runs"]
    assert set().union(*(_covered(r) for r in runs)) == partitions, backfill
    for r in runs:  # every run of the backfill carries the config given in the dialog
        assert _tags(r)["dagster/backfill"] == backfill_id
        assert yaml.safe_load(r["runConfigYaml"]) == yaml.safe_load(CONFIG), r
    _see_backfill_runs(page, [r["runId"] for r in runs], shoot)


RUN_IDS = """{ runsOrError { ... on Runs { results { runId } } } }"""


def test_the_launchpad_names_a_bad_setting_before_a_run_and_a_run_past_a_bound_fails_naming_it(server, page, shoot):
    """Bad input through the UI (the CLI and GraphQL: tests/triggers/test_bad_inputs.py): an unknown
    enumerated value is refused in the launchpad, before any run; a number past its bound (Dagster's config
    schema has no ranges) launches a run that fails in its step, before any work, and the run page says why."""
    _open_asset_graph(page, server.base, shoot)
    before = {r["runId"] for r in graphql(server.graphql, RUN_IDS)["runsOrError"]["results"]}
    launchpad = _launchpad(page, CONFIG.replace("source: synthetic", "source: sentinel-9"))
    launchpad.get_by_text(re.compile("not in enum type ImagerySource got sentinel-9")).first.wait_for()
    shoot("launchpad-bad-source")
    assert launchpad.get_by_role("button", name="Materialize").is_disabled()
    page.keyboard.press("Escape")
    assert {r["runId"] for r in graphql(server.graphql, RUN_IDS)["runsOrError"]["results"]} == before

    page.reload()
    run_id = _materialise_from_launchpad(page, shoot, CONFIG.replace("tile_size: 64", "tile_size: 4112"))
    page.get_by_text(re.compile(r"^Failure$")).first.wait_for(timeout=RUN_TIMEOUT_MS)
    # One line from the step (config.ConfigError), not pydantic's block of lines.
    page.get_by_text(
        re.compile("ConfigError: tile_size must be a multiple of 16 between 16 and 4096, got 4112")
    ).first.wait_for()
    shoot("run-past-a-bound")
    assert graphql(server.graphql, RUN, {"id": run_id})["runOrError"]["status"] == "FAILURE"
