"""The `imagery` resource: where the STAC APIs are and how to read the source buckets.

It only carries configuration; `settings()` turns it into a plain, picklable
`geo_assets.geo.stac.ImagerySettings` that travels with a scene to whichever worker reads tiles.
The S3 fields are for the imagery providers' buckets (sentinel-cogs, usgs-landsat), never our
output storage, which has its own resource.
"""

import dagster as dg

from geo_assets.geo.stac import DEFAULT_STAC_URLS, PC_TOKEN_URL, HttpRetry, ImagerySettings


class ImageryResource(dg.ConfigurableResource):
    earth_search_url: str = DEFAULT_STAC_URLS["earth-search"]
    planetary_computer_url: str = DEFAULT_STAC_URLS["planetary-computer"]
    landsat_url: str = DEFAULT_STAC_URLS["landsat-c2"]
    s3_endpoint_url: str | None = None  # None: AWS S3 itself
    s3_region: str = "us-west-2"  # where sentinel-cogs and usgs-landsat live
    s3_no_sign: bool = True  # anonymous reads (sentinel-cogs); usgs-landsat needs keys and requester_pays
    s3_access_key_id: str | None = (
        None  # e.g. dg.EnvVar("SOURCE_AWS_ACCESS_KEY_ID"); unset with no_sign off: the AWS default chain
    )
    s3_secret_access_key: str | None = None
    s3_requester_pays: bool = False
    pc_token_url: str = PC_TOKEN_URL  # {account} and {container} are filled in per blob container
    http_retries: int = 3  # transient failures only: timeouts, 429, 5xx
    http_backoff_s: float = 0.5  # first wait; doubles each retry
    http_timeout_s: float = 30.0

    def settings(self) -> ImagerySettings:
        return ImagerySettings(
            stac_urls={
                "earth-search": self.earth_search_url,
                "planetary-computer": self.planetary_computer_url,
                "landsat-c2": self.landsat_url,
            },
            s3_endpoint=self.s3_endpoint_url,
            s3_region=self.s3_region,
            s3_no_sign=self.s3_no_sign,
            s3_access_key=self.s3_access_key_id,
            s3_secret_key=self.s3_secret_access_key,
            s3_requester_pays=self.s3_requester_pays,
            pc_token_url=self.pc_token_url,
            http=HttpRetry(self.http_retries, self.http_backoff_s, self.http_timeout_s),
        )
