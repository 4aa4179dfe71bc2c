"""The map server's command with bad arguments, bad settings or a store it cannot read: one line naming
the problem on stderr and a non-zero exit, never a traceback; run as a user runs it (`python -m
geo_assets.map`, `geo-assets map-server`), with a real S3 server for the bucket cases."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from devtools.emulators import free_port
from devtools.emulators.s3 import seaweedfs

ROOT = Path(__file__).resolve().parents[2]
BUCKET = "geo-assets-map-start"
KEY, SECRET = "geo-assets-map-start-key", secrets.token_hex(12)
READER, READER_SECRET = "geo-assets-map-start-reader", secrets.token_hex(12)


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    with seaweedfs(
        tmp_path_factory.mktemp("map-start-s3"), [BUCKET], KEY, SECRET, readers={READER: READER_SECRET}
    ) as s:
        yield s


def serve(*args: str, command=("-m", "geo_assets.map"), timeout: float = 120, **env: str):
    """The command, with `env` over a clean local profile; it must exit by itself (a bad start)."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("GEO_ASSETS_", "AWS_"))}
    environ.update(PYTHONPATH=str(ROOT), **env)
    return subprocess.run(
        [sys.executable, *command, *args], cwd=ROOT, env=environ, capture_output=True, text=True, timeout=timeout
    )


def one_line(result, named: str, code: int = 2) -> str:
    """The problem, named in stderr's last line; no traceback."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode == code, (result.returncode, result.stderr[-3000:])
    assert "Traceback" not in result.stderr and lines, result.stderr[-3000:]
    assert named in lines[-1], (named, result.stderr[-3000:])
    return lines[-1]


def s3_env(s3, root: str, key: str = READER, secret: str = READER_SECRET) -> dict[str, str]:
    return {
        "GEO_ASSETS_PROFILE": "aws",
        "GEO_ASSETS_STORAGE_ROOT": root,
        "AWS_ENDPOINT_URL_S3": s3.endpoint_url,
        "AWS_REGION": s3.region,
        "AWS_ACCESS_KEY_ID": key,
        "AWS_SECRET_ACCESS_KEY": secret,
    }


@pytest.mark.parametrize("port", ["70000", "0", "http"])
def test_a_port_that_is_not_one(port, tmp_path):
    line = one_line(serve("--port", port, GEO_ASSETS_STORAGE_ROOT=tmp_path.as_uri()), f"{port!r} is not a port")
    assert line.startswith("geo-assets map-server: error: argument --port")


@pytest.mark.parametrize(
    ("setting", "value", "named"),
    [
        ("GEO_ASSETS_MAP_RATE", "fast", "GEO_ASSETS_MAP_RATE='fast'"),
        ("GEO_ASSETS_MAP_BASEMAP_URL", "tiles.example.org", "GEO_ASSETS_MAP_BASEMAP_URL="),
        ("GEO_ASSETS_MAP_TRUSTED_PROXIES", "the-proxy", "'the-proxy' is not an address"),
        ("GEO_ASSETS_MAP_URL", "map.example.org", "GEO_ASSETS_MAP_URL="),
        ("GEO_ASSETS_PROFILE", "mars", "unknown GEO_ASSETS_PROFILE='mars'; accepted: local, aws, gcp"),
    ],
)
def test_a_bad_setting_is_named(setting, value, named, tmp_path):
    one_line(serve(GEO_ASSETS_STORAGE_ROOT=tmp_path.as_uri(), **{setting: value}), named)


def test_a_missing_local_store_is_named(tmp_path):
    missing = (tmp_path / "nowhere").as_uri()
    one_line(serve(GEO_ASSETS_STORAGE_ROOT=missing), f"the store {missing} (GEO_ASSETS_STORAGE_ROOT) is not a folder")
    # Through the project's command too, as `make dev` and the images start it.
    one_line(serve(command=("-m", "geo_assets.cli", "map-server"), GEO_ASSETS_STORAGE_ROOT=missing), missing)


def test_a_cloud_profile_without_a_store_is_named():
    one_line(serve(GEO_ASSETS_PROFILE="aws"), "profile aws needs GEO_ASSETS_STORAGE_ROOT=s3://bucket/prefix")


def test_a_missing_bucket_and_refused_keys_are_named(s3):
    one_line(serve(**s3_env(s3, "s3://no-such-bucket/geo-assets")), "bucket 'no-such-bucket' does not exist")
    refused = one_line(serve(**s3_env(s3, f"s3://{BUCKET}/geo-assets", key=READER, secret="not-" + READER_SECRET)), "")
    assert f"access denied to S3 bucket {BUCKET!r}" in refused and READER_SECRET not in refused


def test_a_gcs_endpoint_that_does_not_answer_is_named():
    """gcsfs logs each exhausted retry with its traceback: the server still stops in one line."""
    with socket.socket() as closed:  # a port bound and never listened on: connections are refused
        closed.bind(("127.0.0.1", 0))
        endpoint = f"http://127.0.0.1:{closed.getsockname()[1]}"
        result = serve(
            GEO_ASSETS_PROFILE="gcp",
            GEO_ASSETS_STORAGE_ROOT="gs://geo-assets-map-start/geo-assets",
            STORAGE_EMULATOR_HOST=endpoint,
            GOOGLE_CLOUD_PROJECT="geo-assets-test",
        )
    one_line(result, "GCS store: listing gs://geo-assets-map-start/geo-assets/catalogue/ failed")
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr[-3000:]


def test_an_address_in_use_is_named(s3):
    """A store it can read (with keys that may only read it), on a port something else holds: uvicorn's
    one error line (among its start and stop lines), its start-up failure exit, no traceback."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        result = serve("--port", str(port), **s3_env(s3, f"s3://{BUCKET}/geo-assets"))
    assert result.returncode == 3 and "Traceback" not in result.stderr, result.stderr[-3000:]
    (error,) = [line for line in result.stderr.splitlines() if line.startswith("ERROR")]
    assert f"('127.0.0.1', {port}): address already in use" in error, result.stderr[-3000:]


def test_it_serves_when_all_is_well(s3):
    """The control of the cases above: the same command, settings and read-only keys start a server
    that answers (so a refusal above is the bad value's, not the command's)."""
    import time

    import requests

    port = free_port()
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("GEO_ASSETS_", "AWS_"))}
    environ.update(PYTHONPATH=str(ROOT), **s3_env(s3, f"s3://{BUCKET}/geo-assets"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "geo_assets.map", "--port", str(port)],
        cwd=ROOT,
        env=environ,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2).ok:
                    break
            except requests.ConnectionError:
                time.sleep(0.2)
        assert proc.poll() is None, proc.stderr.read()[-3000:]
        legend = requests.get(f"http://127.0.0.1:{port}/api/legend", timeout=10)
        assert legend.status_code == 200 and legend.json()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
