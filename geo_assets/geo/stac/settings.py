"""The imagery settings: plain and picklable, built by the `imagery` Dagster resource."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from geo_assets.geo.stac.http import HttpRetry
from geo_assets.geo.stac.signing import PC_TOKEN_URL, SasTokenSigner

DEFAULT_STAC_URLS = {
    "earth-search": "https://earth-search.aws.element84.com/v1",
    "planetary-computer": "https://planetarycomputer.microsoft.com/api/stac/v1",
    "landsat-c2": "https://landsatlook.usgs.gov/stac-server",
}


@dataclass(frozen=True)
class ImagerySettings:
    """Where the STAC APIs are and how to read the buckets their items point at.

    The S3 fields are for the *source* buckets (sentinel-cogs, usgs-landsat), not our output storage.
    `signer` signs Planetary Computer hrefs at read time; None uses `SasTokenSigner(pc_token_url)`.
    Give a picklable one (a top-level function or object) when tiles are read in other processes.
    """

    stac_urls: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_STAC_URLS))
    s3_endpoint: str | None = None  # e.g. "http://127.0.0.1:8333"; None: AWS
    s3_region: str | None = "us-west-2"  # None: the SDK's own (a store built with no region)
    s3_no_sign: bool = True  # sentinel-cogs is public; usgs-landsat needs credentials and requester pays
    s3_access_key: str | None = field(default=None, repr=False)
    s3_secret_key: str | None = field(default=None, repr=False)
    s3_requester_pays: bool = False
    pc_token_url: str = PC_TOKEN_URL
    http: HttpRetry = HttpRetry()
    signer: Callable[[str], str] | None = None

    def url(self, source: str) -> str:
        try:
            return self.stac_urls[source].rstrip("/")
        except KeyError:
            raise ValueError(
                f"no STAC API URL configured for source {source!r}; configured: {sorted(self.stac_urls)}"
            ) from None

    def href_signer(self) -> Callable[[str], str]:
        return self.signer or SasTokenSigner(self.pc_token_url, self.http)
