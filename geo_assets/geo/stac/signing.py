"""Signed hrefs. Planetary Computer's: a SAS token per storage account and container, fetched lazily.
And a token is a credential: whatever GDAL says of a signed URL is redacted."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

from geo_assets.geo import retries
from geo_assets.geo.stac.errors import ImageryError
from geo_assets.geo.stac.http import HttpRetry

PC_TOKEN_URL = "https://planetarycomputer.microsoft.com/api/sas/v1/token/{account}/{container}"

_TOKENS: dict[tuple[str, str, str], tuple[str, float]] = {}  # (token url, account, container) -> (token, expiry)
_TOKENS_LOCK = threading.Lock()


def blob_container(href: str) -> tuple[str, str]:
    """(storage account, container) of an Azure blob URL.

    `https://{account}.blob.core.windows.net/{container}/{blob}`, or the path style of Azure
    emulators (Azurite): `http://host:port/{account}/{container}/{blob}`.
    """
    parts = urlsplit(href)
    path = parts.path.lstrip("/").split("/")
    host = parts.hostname or ""
    if host.endswith(".blob.core.windows.net") and path[0]:
        return host.split(".", 1)[0], path[0]
    if len(path) >= 3 and path[0] and path[1]:
        return path[0], path[1]
    raise ValueError(f"cannot tell the storage account and container of {href!r}")


@dataclass(frozen=True)
class SasTokenSigner:
    """Appends a SAS token from a token endpoint (Planetary Computer's by default) to blob hrefs.

    Tokens are cached per process until `refresh_margin_s` before their `msft:expiry`, so a scene
    signs once per container and hour, not once per read; the cache lives at module level so the
    signer itself stays picklable for workers.
    """

    token_url: str = PC_TOKEN_URL  # with {account} and {container}
    http: HttpRetry = HttpRetry()
    refresh_margin_s: float = 300.0

    def __call__(self, href: str) -> str:
        account, container = blob_container(href)
        token = self.token(account, container)
        return f"{href}{'&' if '?' in href else '?'}{token}"

    def token(self, account: str, container: str) -> str:
        key = (self.token_url, account, container)
        with _TOKENS_LOCK:  # one fetch at a time: threads reading tiles wait for the same token
            cached = _TOKENS.get(key)
            if cached and cached[1] - self.refresh_margin_s > time.time():
                return cached[0]
            token, expiry = self._fetch(account, container)
            _TOKENS[key] = (token, expiry)
            return token

    def _fetch(self, account: str, container: str) -> tuple[str, float]:
        import requests
        from requests.adapters import HTTPAdapter

        url = self.token_url.format(account=account, container=container)
        with requests.Session() as session:
            session.mount("http://", HTTPAdapter(max_retries=self.http.urllib3()))
            session.mount("https://", HTTPAdapter(max_retries=self.http.urllib3()))
            try:
                resp = session.get(url, timeout=self.http.timeout_s)
            except requests.RequestException as exc:
                raise ImageryError(f"SAS token request {url} failed: {exc}") from None
        if resp.status_code != 200:
            raise ImageryError(f"SAS token request {url} answered HTTP {resp.status_code}: {resp.text[:200]}")
        body = resp.json()
        try:
            expiry = datetime.fromisoformat(body["msft:expiry"].replace("Z", "+00:00")).timestamp()
            return body["token"], expiry
        except (KeyError, TypeError, ValueError):
            raise ImageryError(
                f"SAS token response from {url} lacks 'token' or 'msft:expiry': {str(body)[:200]}"
            ) from None


# -- Signed hrefs: a token is a credential, and GDAL quotes the URL it read, query included, in its errors
# and warnings, whole or in part (a block read's error names only what follows the URL's last "/"). The
# pieces of every signed query read lately are kept, to be cut from whatever GDAL says: our errors, and
# rasterio's log lines of GDAL's words.

_QUERY = re.compile(r"(https?://[^\s'\"?]+)\?[^\s'\"]*")  # a URL's query
_SIGNED: OrderedDict[str, None] = OrderedDict()  # pieces of signed queries, most recent last
_SIGNED_MAX = 1024
_SIGNED_LOCK = threading.Lock()


# Query parameters of signed URLs (Azure SAS, S3 and GCS presigned) that are no secret: dates, versions,
# permissions. Every other value, and each part of it between "/" (GDAL may quote only what follows the last
# one), is cut where it is 6 characters or more.
_NOT_SECRET = frozenset(
    """sv st se sp sr spr srt ss rscc rscd rsce rscl rsct x-amz-algorithm x-amz-date x-amz-expires
    x-amz-signedheaders x-goog-algorithm x-goog-date x-goog-expires x-goog-signedheaders""".split()
)


def remember_signed(path: str) -> str:
    """`path`, the secret values of its query remembered, to be redacted."""
    values = [
        v for n, _, v in (p.partition("=") for p in path.partition("?")[2].split("&")) if n.lower() not in _NOT_SECRET
    ]
    pieces = [p for v in values for p in (v, *v.split("/")) if len(p) >= 6]
    with _SIGNED_LOCK:
        for piece in pieces:
            _SIGNED[piece] = None
            _SIGNED.move_to_end(piece)
        while len(_SIGNED) > _SIGNED_MAX:
            _SIGNED.popitem(last=False)
    return path


def redacted(text: str) -> str:
    """`text` without any URL's query and without any piece of a signed query read lately."""
    text = _QUERY.sub(r"\1?...", text)
    with _SIGNED_LOCK:
        pieces = [p for p in _SIGNED if p in text]
    for piece in pieces:
        text = text.replace(piece, "...")
    return text


class _Redacted(logging.Filter):
    def filter(self, line: logging.LogRecord) -> bool:
        message = line.getMessage()
        clean = redacted(message)
        if clean != message:
            line.msg, line.args = clean, ()
        return True


def redact_gdal_lines() -> None:
    """Cut signed queries from rasterio's log lines (GDAL's words, the datasets it opens, at any level) from
    here on. A filter applies to its own logger's lines only, so each of rasterio's loggers gets one."""
    names = [n for n in list(logging.root.manager.loggerDict) if n == "rasterio" or n.startswith("rasterio.")]
    with _SIGNED_LOCK:
        for name in (*retries.GDAL_LOGGERS, *names):
            logger = logging.getLogger(name)
            if not any(isinstance(f, _Redacted) for f in logger.filters):
                logger.addFilter(_Redacted())
