"""The `arrivals` resource: where scenes land in the storage and how the scene_arrivals sensor watches them.

A deployment setting, read from GEO_ASSETS_ARRIVALS_* variables by `arrivals_from_env()`; each value
has bounds, and a bad one fails when the code location loads, naming the variable.
"""

from datetime import UTC, datetime

import dagster as dg
from pydantic import Field, ValidationError, field_validator

from geo_assets.geo.arrivals import DEFAULT_LAYOUT, Layout, Watcher
from geo_assets.settings import by_name


class ArrivalsResource(dg.ConfigurableResource):
    layout: str = DEFAULT_LAYOUT  # partition folders under the storage root; items are the .json objects in them
    lookback_days: int = Field(default=7, ge=0, le=366)  # dates this far before arrival are found at once
    settle_seconds: float = Field(default=300.0, ge=0, le=86400)  # longer than the slowest upload, plus clock skew
    max_requests: int = Field(default=25, ge=1, le=1000)  # listing requests per tick for recent dates
    sweep_seconds: float = Field(default=0.25, ge=0, le=30)  # listing time per tick of the sweep for older dates
    max_arrivals: int = Field(default=1000, ge=1, le=10000)  # item versions per tick; the rest at the next
    register_regions: bool = False  # register an unknown region from its first item's projected footprint
    since: str | None = None  # ISO time: watch versions that arrived from then on (default: the first tick)

    @field_validator("layout")
    @classmethod
    def _layout(cls, value: str) -> str:
        Layout.parse(value)
        return value

    @field_validator("since")
    @classmethod
    def _since(cls, value: str | None) -> str | None:
        if value is not None:
            since_timestamp(value)
        return value

    def watcher(self) -> Watcher:
        return Watcher(
            Layout.parse(self.layout),
            self.lookback_days,
            self.settle_seconds,
            self.max_requests,
            self.sweep_seconds,
            self.max_arrivals,
        )


def since_timestamp(value: str) -> float:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"since={value!r}: expected an ISO time, e.g. 2024-06-01T00:00:00Z") from None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()


SETTINGS = {  # field -> its deployment setting (geo_assets/settings.py); values typed and bounded there
    "layout": by_name("GEO_ASSETS_ARRIVALS_LAYOUT"),
    "lookback_days": by_name("GEO_ASSETS_ARRIVALS_LOOKBACK_DAYS"),
    "settle_seconds": by_name("GEO_ASSETS_ARRIVALS_SETTLE_SECONDS"),
    "max_requests": by_name("GEO_ASSETS_ARRIVALS_MAX_REQUESTS"),
    "sweep_seconds": by_name("GEO_ASSETS_ARRIVALS_SWEEP_SECONDS"),
    "max_arrivals": by_name("GEO_ASSETS_ARRIVALS_MAX_ARRIVALS"),
    "register_regions": by_name("GEO_ASSETS_ARRIVALS_REGISTER_REGIONS"),
    "since": by_name("GEO_ASSETS_ARRIVALS_SINCE"),
}


def arrivals_from_env() -> ArrivalsResource:
    settings = {field: setting.get() for field, setting in SETTINGS.items() if setting.raw() is not None}
    try:
        return ArrivalsResource(**settings)
    except ValidationError as exc:  # a layout or time the resource refuses
        error = exc.errors()[0]
        setting = SETTINGS[str(error["loc"][0])]
        raise ValueError(f"{setting.name}={setting.raw()!r}: {error['msg'].removeprefix('Value error, ')}") from None
