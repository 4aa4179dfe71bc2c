"""The request rate per client behind the sign-in proxy, through a real map server (uvicorn) and real
TCP connections from two loopback addresses: the proxy's (127.0.0.2) and a client's own (127.0.0.1).

From a trusted proxy (GEO_ASSETS_MAP_TRUSTED_PROXIES) each signed-in user (X-Forwarded-User, as
oauth2-proxy sets it) has a limit of their own; from any other peer, and from every peer when no
proxy is trusted (the default), the header is ignored, so a client cannot pick a fresh limit by
sending a new name, nor pose as the proxy with X-Forwarded-For."""

from __future__ import annotations

import http.client
import os
import subprocess
import sys
from urllib.parse import urlsplit

import pytest
from map_world import ROOT, map_server

from devtools.emulators import free_port

PROXY, CLIENT = "127.0.0.2", "127.0.0.1"
TRUSTED = "GEO_ASSETS_MAP_TRUSTED_PROXIES"
RATE = "1"  # per second, a burst of 2: a handful of quick requests runs past it on any machine


def _status(url: str, source: str, headers: dict[str, str] | None = None) -> int:
    """GET /api/legend over a connection from `source`; the status."""
    conn = http.client.HTTPConnection("127.0.0.1", urlsplit(url).port, timeout=30, source_address=(source, 0))
    try:
        conn.request("GET", "/api/legend", headers=headers or {})
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def _server(world, tmp_path, **settings: str):
    store, _ = world
    env = {k: v for k, v in os.environ.items() if k != TRUSTED}  # the default unless `settings` name it
    env.update(GEO_ASSETS_STORAGE_ROOT=store.root, GEO_ASSETS_MAP_RATE=RATE, PYTHONPATH=str(ROOT), **settings)
    return map_server(env, tmp_path / "map.log")


def test_each_user_behind_a_trusted_proxy_has_a_limit_of_their_own(world, tmp_path):
    with _server(world, tmp_path, GEO_ASSETS_MAP_TRUSTED_PROXIES=f"{PROXY}/32, 10.8.0.0/14") as url:
        alice = [_status(url, PROXY, {"X-Forwarded-User": "alice"}) for _ in range(8)]
        assert alice[0] == 200 and 429 in alice, alice  # her own limit holds
        bob = [_status(url, PROXY, {"X-Forwarded-User": "bob"}) for _ in range(2)]
        assert bob == [200, 200], bob  # through the same proxy, right after her: a limit of his own
        # Not through the proxy: the header is not believed, however the client names itself, and
        # X-Forwarded-For does not make it the proxy.
        spoofed = [_status(url, CLIENT, {"X-Forwarded-User": f"user-{n}", "X-Forwarded-For": PROXY}) for n in range(8)]
        assert spoofed[0] == 200 and 429 in spoofed, spoofed


def test_without_a_trusted_proxy_the_user_header_is_ignored(world, tmp_path):
    with _server(world, tmp_path) as url:
        named = [_status(url, PROXY, {"X-Forwarded-User": f"user-{n}"}) for n in range(8)]
        assert named[0] == 200 and 429 in named, named  # one limit for the address, whatever the names


def test_a_bad_trusted_proxy_setting_is_refused_naming_it(world):
    store, _ = world
    env = {
        **os.environ,
        "GEO_ASSETS_STORAGE_ROOT": store.root,
        "PYTHONPATH": str(ROOT),
        "GEO_ASSETS_MAP_TRUSTED_PROXIES": "oauth2-proxy.geo-assets-auth",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "geo_assets.cli", "map-server", "--port", str(free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert "GEO_ASSETS_MAP_TRUSTED_PROXIES='oauth2-proxy.geo-assets-auth'" in proc.stderr
    assert "not an address or a network" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("value", ["*", "::1, 127.0.0.0/8"])
def test_trusted_proxy_settings_that_are_accepted(value, world, tmp_path):
    """An address, networks of both families, or `*` (every peer: the cluster's NetworkPolicy admits only the proxy)."""
    with _server(world, tmp_path, GEO_ASSETS_MAP_TRUSTED_PROXIES=value) as url:
        users = [_status(url, PROXY, {"X-Forwarded-User": f"user-{n}"}) for n in range(8)]
        assert users == [200] * 8, users  # a new user, a fresh limit: the proxy is trusted
