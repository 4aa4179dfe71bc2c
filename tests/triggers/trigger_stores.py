"""Names and settings shared by the trigger tests and their fixtures."""

import secrets

from geo_assets.geo.regions import Region

BUCKET = "geo-assets-triggers"
ACCESS_KEY = "triggers-key"
SECRET = "sEcReT-" + secrets.token_hex(12)
REGION = "us-east-1"
# 2 x 2 tiles of 64 px at 10 m, on the grid.
FARM = Region("arrival-farm", (399360.0, 5140480.0, 400640.0, 5141760.0), "EPSG:32631", "earth-search")


def s3_settings(server) -> dict:
    return dict(
        endpoint_url=server.endpoint_url,
        region=REGION,
        access_key_id=server.access_key,
        secret_access_key=server.secret_key,
    )


def gcs_settings(endpoint_url) -> dict:
    return dict(endpoint_url=endpoint_url, anonymous=True, project="test-project")
