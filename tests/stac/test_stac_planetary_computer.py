"""Planetary Computer: the same collection under other asset names, with hrefs signed at read time.

The blobs are in Azurite (a real Azure Blob API, which checks the SAS of every request); the
tokens come from a local stand-in for PC's token endpoint that mints real container SAS tokens."""

from __future__ import annotations

import dataclasses
import logging
import time
import urllib.error
import urllib.request
from datetime import datetime
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pytest
from expect import BANDS, mosaic, s2_layer
from stac_regions import S2_REGION, tiles

from geo_assets.geo.sources import plan_scene
from geo_assets.geo.stac import ImageryError, SasTokenSigner, blob_container

ITEM = "S2B_MSIL2A_20240601T143729_R096_T19FFM_20240601T180203"


@pytest.fixture
def pc_server(pc):
    pc.token_calls.clear()
    pc.fail_next.clear()
    pc.lifetime_s = 3600.0
    yield pc
    pc.lifetime_s = 3600.0
    pc.fail_next.clear()


def test_signs_lazily_caches_the_token_and_reads_harmonised_pixels(settings, pc_server, catalogues):
    scene = plan_scene("planetary-computer", S2_REGION, "2024-06-01", settings, bands=BANDS)
    assert [i.id for i in scene.items] == [ITEM]
    assert scene.items[0].hrefs["blue"].startswith(pc_server.blobs.account_url + "/sentinel2-l2/19/F/FM/2024/06/01/")
    assert pc_server.token_calls == []  # planning signs nothing
    for tile in tiles(S2_REGION, 10.0):
        win = scene.read(tile.bounds, BANDS)
        data, valid, cloud, _ = mosaic([s2_layer(catalogues["planetary-computer"], ITEM, tile.bounds, 1000)])
        np.testing.assert_array_equal(win.data, data)  # baseline 05.00, no boa flag: DN - 1000
        np.testing.assert_array_equal(win.cloud, cloud)
        assert valid.any()
    # 4 tiles x 5 files, one container: one token, fetched at the first read (and accepted by Azurite).
    assert pc_server.token_calls == [("devstoreaccount1", "sentinel2-l2")]


def test_an_expired_token_is_refreshed(settings, pc_server):
    signer = SasTokenSigner(pc_server.token_url, settings.http, refresh_margin_s=0.0)
    scene = plan_scene(
        "planetary-computer", S2_REGION, "2024-06-01", dataclasses.replace(settings, signer=signer), bands=["red"]
    )
    pc_server.lifetime_s = 1.0  # the SAS expires 1-2 s from now (SAS times are whole seconds)
    bounds = tiles(S2_REGION, 10.0)[0].bounds
    first = scene.read(bounds, ["red"])
    old = signer(scene.items[0].hrefs["red"])  # still the cached token
    assert len(pc_server.token_calls) == 1
    urllib.request.urlopen(old, timeout=5).close()  # Azurite accepts it while it lasts ...
    expiry = datetime.fromisoformat(parse_qs(urlsplit(old).query)["se"][0].replace("Z", "+00:00")).timestamp()
    assert 0 < expiry - time.time() <= 2.5
    time.sleep(expiry - time.time() + 0.3)
    with pytest.raises(urllib.error.HTTPError, match="403"):  # ... and refuses it once expired ...
        urllib.request.urlopen(old, timeout=5)
    again = scene.read(bounds, ["red"])  # ... and the signer fetched a new one
    assert len(pc_server.token_calls) == 2
    np.testing.assert_array_equal(again.data, first.data)


def test_a_custom_signer_is_called_per_read(settings, pc_server):
    signed = []
    default = SasTokenSigner(pc_server.token_url, settings.http)

    def sign(href: str) -> str:
        signed.append(href)
        return default(href)

    scene = plan_scene(
        "planetary-computer", S2_REGION, "2024-06-01", dataclasses.replace(settings, signer=sign), bands=["red", "nir"]
    )
    assert signed == []
    scene.read(tiles(S2_REGION, 10.0)[0].bounds, ["red", "nir"])
    item = scene.items[0]
    assert signed == [item.hrefs["mask"], item.hrefs["red"], item.hrefs["nir"]]


def test_a_signed_hrefs_token_is_in_no_error_and_no_log_line(settings, pc_server, caplog, capfd):
    """A SAS token is a credential: GDAL names the signed URL it read in its retry warnings and in some errors,
    and neither may carry the token on. Through a fault proxy before Azurite: two 503s are retried by GDAL and
    counted; 503s that never stop fail the read as unavailable, naming the attempts; a token Azurite refuses
    fails it as denied. The errors, every log line and stderr name the blob without its query."""
    from devtools.faults import FaultProxy

    default = SasTokenSigner(pc_server.token_url, settings.http)
    account = pc_server.blobs.account_url  # http://127.0.0.1:PORT/devstoreaccount1
    host, port = account.removeprefix("http://").split("/")[0].split(":")
    bounds = tiles(S2_REGION, 10.0)[0].bounds
    planted = "sv=2021-08-06&sr=c&sp=r&se=2099-01-01T00%3A00%3A00Z&sig=PLANTEDsecret0123456789"
    with FaultProxy(host, int(port)) as proxy:
        query = {"planted": False}

        def sign(href: str) -> str:  # through the proxy, with a real token or the planted one
            signed = f"{href}?{planted}" if query["planted"] else default(href)
            return signed.replace(account.rsplit("/", 1)[0], proxy.url)

        scene = plan_scene(
            "planetary-computer", S2_REGION, "2024-06-01", dataclasses.replace(settings, signer=sign), bands=["red"]
        )
        caplog.set_level(logging.DEBUG)
        proxy.inject("503", times=2, methods=("GET", "HEAD"))
        scene.read(bounds, ["red"])
        assert proxy.injected["503"] == 2
        retried = [r.getMessage() for r in caplog.records if "succeeded after retries" in r.getMessage()]
        assert retried and all("HTTP 503 x" in m for m in retried), retried

        proxy.inject("503", methods=("GET", "HEAD"))
        with pytest.raises(
            ImageryError, match=r"unavailable, still failing after retries: \d+ \(HTTP 503 x"
        ) as unavailable:
            scene.read(tiles(S2_REGION, 10.0)[1].bounds, ["red"])  # another tile: nothing of it cached
        proxy.heal()

        query["planted"] = True
        with pytest.raises(ImageryError, match="access denied") as denied:
            scene.read(tiles(S2_REGION, 10.0)[2].bounds, ["red"])
    token = default(scene.items[0].hrefs["red"]).split("sig=", 1)[1].split("&", 1)[0]  # as sent: URL-encoded
    captured = capfd.readouterr()
    errors = [str(unavailable.value), str(denied.value)]
    text = "\n".join([*errors, *(r.getMessage() for r in caplog.records), captured.out, captured.err])
    assert "IReadBlock failed" in errors[0] and "..." in errors[0], errors[0]  # GDAL's words kept, not the token
    assert token not in text and "PLANTEDsecret" not in text


def test_token_endpoint_retries_transient_failures_only(settings, pc_server):
    signer = SasTokenSigner(pc_server.token_url, settings.http)
    href = f"{pc_server.blobs.account_url}/sentinel2-l2/x.tif"
    pc_server.fail_next[:] = [503, 429]
    assert "sig=" in signer(href)
    assert len(pc_server.token_calls) == 3  # two transient failures, then the token

    signer = SasTokenSigner(pc_server.token_url + "?fresh", settings.http)  # another cache key
    pc_server.token_calls.clear()
    pc_server.fail_next[:] = [403]
    with pytest.raises(
        ImageryError, match=r"SAS token request .*/token/devstoreaccount1/sentinel2-l2\?fresh answered HTTP 403"
    ):
        signer(href)
    assert len(pc_server.token_calls) == 1  # a 4xx is an answer: never retried


def test_blob_container_of_real_and_emulated_urls():
    assert blob_container("https://sentinel2l2a01.blob.core.windows.net/sentinel2-l2/19/F/FM/B02.tif") == (
        "sentinel2l2a01",
        "sentinel2-l2",
    )
    assert blob_container("http://127.0.0.1:10000/devstoreaccount1/c/b.tif") == ("devstoreaccount1", "c")
    with pytest.raises(ValueError, match="cannot tell"):
        blob_container("http://127.0.0.1:10000/x.tif")


def test_an_unsigned_read_is_refused_and_named(settings, pc_server):
    scene = plan_scene(
        "planetary-computer",
        S2_REGION,
        "2024-06-01",
        dataclasses.replace(settings, signer=lambda href: href),
        bands=["red"],
    )
    with pytest.raises(
        ImageryError, match=r"^http://127\.0\.0\.1:\d+/devstoreaccount1/sentinel2-l2/.*/SCL\.tif: access denied"
    ):
        scene.read(tiles(S2_REGION, 10.0)[0].bounds, ["red"])
    assert pc_server.token_calls == []
    href = scene.items[0].hrefs["mask"]  # Azurite refuses the blob without a SAS, and serves it with one
    with pytest.raises(urllib.error.HTTPError, match="403"):
        urllib.request.urlopen(href, timeout=5)
    urllib.request.urlopen(SasTokenSigner(pc_server.token_url, settings.http)(href), timeout=5).close()
