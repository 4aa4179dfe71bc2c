"""Retries of a STAC API's and a COG's transient HTTP failures: plain and picklable."""

from __future__ import annotations

import math
from dataclasses import dataclass

from urllib3.util.retry import Retry

TRANSIENT_STATUSES = (429, 500, 502, 503, 504)  # retried; any other 4xx is an answer, not a hiccup


@dataclass(frozen=True)
class HttpRetry:
    """Retries of transient HTTP failures (timeouts, 429, 5xx) with exponential backoff."""

    retries: int = 3
    backoff_s: float = 0.5  # first wait; doubles each retry
    timeout_s: float = 30.0

    def urllib3(self) -> Retry:
        # status_forcelist limits status retries to transient ones: a 4xx other than 429 is final.
        return Retry(
            total=self.retries,
            connect=self.retries,
            read=self.retries,
            status=self.retries,
            backoff_factor=self.backoff_s,
            status_forcelist=TRANSIENT_STATUSES,
            allowed_methods=None,  # STAC searches are POSTs, and idempotent
            raise_on_status=False,  # after the last try, hand back the response so its status is reported
        )

    def gdal(self) -> dict[str, str]:
        # GDAL retries these codes (and curl timeouts) only, doubling the delay each time.
        return {
            "GDAL_HTTP_MAX_RETRY": str(self.retries),
            "GDAL_HTTP_RETRY_DELAY": str(self.backoff_s),
            "GDAL_HTTP_RETRY_CODES": ",".join(map(str, TRANSIENT_STATUSES)),
            "GDAL_HTTP_TIMEOUT": str(max(1, math.ceil(self.timeout_s))),
        }
