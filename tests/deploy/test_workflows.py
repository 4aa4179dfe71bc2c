"""GitHub Actions workflows (.github/workflows/): valid against the GitHub Actions workflow schema
(check-jsonschema's vendored copy, no network), testing every push and pull request with the
project's make targets, and deploying from main only, without stored keys, filling in every
placeholder of the Helm values. Not run here: GitHub itself, the image builds, the rollouts."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github/workflows"
CHECK = Path(sys.executable).parent / "check-jsonschema"


def _check(*paths: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [CHECK, "--builtin-schema", "vendor.github-workflows", *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def _load(name: str) -> dict:
    doc = yaml.safe_load((WORKFLOWS / name).read_text())
    doc["on"] = doc.pop(True, doc.get("on"))  # YAML 1.1 reads the key `on` as true
    return doc


def test_workflows_match_the_schema():
    files = sorted(WORKFLOWS.glob("*.yml"))
    assert {f.name for f in files} == {"test.yml", "deploy.yml"}
    proc = _check(*files)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_schema_check_rejects_a_broken_workflow(tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text("name: bad\non: push\njobs:\n  test:\n    steps:\n      - run: make test\n")  # no runs-on
    assert _check(bad).returncode != 0


def test_every_push_and_pull_request_runs_the_tests_and_validates():
    wf = _load("test.yml")
    assert set(wf["on"]) == {"push", "pull_request"} and wf["on"]["push"] is None
    runs = [s.get("run", "") for s in wf["jobs"]["test"]["steps"]]
    assert "make test" in runs and "make validate" in runs
    assert any("make setup" in r for r in runs)


def test_main_builds_both_images_then_rolls_out_without_keys():
    wf = _load("deploy.yml")
    trigger = wf["on"]["workflow_run"]
    assert trigger == {"workflows": ["test"], "types": ["completed"], "branches": ["main"]}
    assert wf["permissions"]["id-token"] == "write"  # OIDC to the clouds
    assert "secrets." not in (WORKFLOWS / "deploy.yml").read_text()
    images = wf["jobs"]["images"]
    assert "conclusion == 'success'" in images["if"]
    assert {m["dockerfile"] for m in images["strategy"]["matrix"]["include"]} == {
        "deploy/Dockerfile",
        "deploy/Dockerfile.gpu",
    }
    for job, cloud in (("gke", "gke"), ("eks", "eks")):
        assert wf["jobs"][job]["needs"] == "images"
        script = "\n".join(s.get("run", "") for s in wf["jobs"][job]["steps"])
        assert (
            f"deploy/helm/values-{cloud}.yaml" in script
            and "helm upgrade --install dagster dagster/dagster --version 1.13.27" in script
        )
        # envsubst fills in exactly the placeholders the values file has.
        listed = set(re.findall(r"\$\{(\w+)\}", script.split("envsubst", 1)[1].split("<", 1)[0]))
        wanted = set(re.findall(r"\$\{(\w+)\}", (ROOT / f"deploy/helm/values-{cloud}.yaml").read_text()))
        assert listed == wanted, (cloud, listed ^ wanted)
        env = {k for s in wf["jobs"][job]["steps"] for k in s.get("env", {})}
        assert wanted <= env


def test_images_are_built_with_the_map_pages_leaflet():
    """Leaflet is not in git: the images job fetches it (npm, devtools/leaflet.py) before the build, which
    reads the checkout's files (a path context, not git's, which would lack it)."""
    steps = _load("deploy.yml")["jobs"]["images"]["steps"]
    uses = [s.get("uses", "").split("@")[0] for s in steps]
    fetch = next(i for i, s in enumerate(steps) if "python3 -m devtools.leaflet" in s.get("run", ""))
    build = uses.index("docker/build-push-action")
    assert uses.index("actions/setup-node") < fetch < build  # npm first, then Leaflet, then the image
    assert steps[fetch].get("if") is None  # for both clouds and both images
    assert steps[build]["with"]["context"] == "."
