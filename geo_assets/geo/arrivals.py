"""Scene arrivals: new STAC items landing under a watched prefix, found with listings that do not
grow with the bucket, each object version once (on a local root, again when its folder changes).

Layout. A template of folders, e.g. `incoming/{region}/{date}` (the default) or
`incoming/{date}/{region}`: every `.json` object anywhere under a partition's folder is one of its
scene's STAC items; other objects there (the items' COGs) are its assets. Keys that fit no partition
folder (a bad region slug or date, a stray file) are unrecognised: reported once, never fatal.

How arrivals are found. Every object version has one arrival time, `modified` (S3 LastModified,
taken as the end of its whole second; GCS timeCreated; a local file's ctime, see below), and a date from its
key. A version is *recent* when its date is at most `lookback_days` before the day it arrived, else
*late* (an old date delivered now).

- Recent versions are found by the *hot pass*: per root (each region folder for `{region}/{date}`
  layouts; the prefix itself for `{date}/...`) one listing from the oldest recent date on (S3
  StartAfter, GCS startOffset): its cost is the recent keys, not the history before them.
- Late versions and unrecognised keys are found by the *sweep*: a walk over the whole prefix, resumed
  from its last key, for `sweep_seconds` of listing per tick (a page of 1000 keys at least), so a
  pass over N objects takes about N / (keys listed per tick) ticks.
- Each pass takes the versions that arrived in its time slice [lo, hi): `hi` is when the pass began,
  less `settle_seconds` (an upload is listed a little after its LastModified, which S3 sets when the
  upload starts), and `lo` is the previous pass's `hi`. Slices follow one another with no gap or
  overlap, and whether a version is recent depends on the version alone, so each version is taken by
  one pass, once, with no memory of keys: the cursor is a few hundred bytes, the same at 100 or 10^8
  objects. Deletions leave nothing to find; a rewrite is a new version with a new arrival time.
- A local file's arrival time is the latest ctime of the file and of the folders above it from its
  partition's folder down: a folder moved in with `mv` (staged elsewhere, then renamed in: the atomic
  delivery of a file system) keeps its files' ctimes but gets its own, so it arrives when it moved.
  `chmod` and `chown` move a ctime too, and a file added to or removed from a folder moves the
  folder's: a pass may then take a version again (no arrival is lost for it; the sensor asks for no
  run of versions it asked for before), and a folder that keeps changing holds its items back until it
  has been quiet for `settle_seconds`. Folders above a partition's (`incoming/`, a region's under
  `{region}/{date}`) stamp nothing: a change there would offer the whole history under them again, so
  a folder moved in above that level is not found; the tick's log names it once (`moved_folders`: its
  ctime after its mtime, in the recent-dates pass's slice). Move partition folders in.
- A new `lookback_days` applies to versions that arrive after every slice either pass has begun,
  so a setting change neither repeats nor skips a version.

Work per tick is bounded (listing requests, sweep time, arrivals); a pass left unfinished goes on
from its last key at the next tick. Nothing here imports dagster: the sensor module turns arrivals
into run requests.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from datetime import date as Date

from geo_assets.geo.regions import validate_date, validate_region_name
from geo_assets.geo.store import PAGE, ObjectInfo, Store, validate_key

__all__ = ["Arrival", "DEFAULT_LAYOUT", "ITEM_SUFFIX", "Layout", "Pass", "Tick", "WatchState", "Watcher", "recent"]

DEFAULT_LAYOUT = "incoming/{region}/{date}"
ITEM_SUFFIX = ".json"
_FIELDS = ("{region}", "{date}")


@dataclass(frozen=True)
class Layout:
    """Where a partition's arrivals land: literal folders, then `{region}` and `{date}`, in either order,
    with optional literal folders between them."""

    template: str
    segments: tuple[str, ...]

    @classmethod
    def parse(cls, template: str) -> Layout:
        accepted = "literal folders, then {region} and {date} as whole folders, e.g. incoming/{region}/{date}"
        segments = tuple(template.strip("/").split("/")) if isinstance(template, str) else ()
        if any(segments.count(f) != 1 for f in _FIELDS):
            raise ValueError(
                f"invalid arrivals layout {template!r}: it needs {{region}} and {{date}} once each; {accepted}"
            )
        if segments[0] in _FIELDS or segments[-1] not in _FIELDS:
            raise ValueError(
                f"invalid arrivals layout {template!r}: it must start with a literal folder and end with "
                f"{{region}} or {{date}}; {accepted}"
            )
        for s in segments:
            if s not in _FIELDS:
                try:
                    validate_key(s)
                except ValueError:
                    raise ValueError(
                        f"invalid arrivals layout {template!r}: folder {s!r} is not allowed; {accepted}"
                    ) from None
        return cls(template, segments)

    @property
    def prefix(self) -> str:
        """The literal folders before the first field: everything watched lies under it."""
        return "/".join(self.segments[: min(self.segments.index(f) for f in _FIELDS)])

    @property
    def region_first(self) -> bool:
        return self.segments.index("{region}") < self.segments.index("{date}")

    def folder(self, region: str, date: str) -> str:
        """The key of a partition's folder, e.g. `incoming/my-farm/2024-06-01`."""
        values = {"{region}": validate_region_name(region), "{date}": validate_date(date)}
        return "/".join(values.get(s, s) for s in self.segments)

    def roots(self, store: Store) -> list[str]:
        """The folders whose children are dates: listing each from its oldest recent date finds recent arrivals."""
        before_date = list(self.segments[: self.segments.index("{date}")])
        if not self.region_first:
            return ["/".join(before_date) + "/"]
        at = before_date.index("{region}")
        parent = "/".join(before_date[:at])
        roots = []
        for name in store.folders(parent):
            try:
                validate_region_name(name)
            except ValueError:
                continue  # not a region folder: whatever lies there is the sweep's to report
            roots.append("/".join([parent, name, *before_date[at + 1 :]]) + "/")
        return sorted(roots)

    def classify(self, key: str) -> tuple[str, str, str | None]:
        """("item" | "asset", region, date) for a key under a partition folder, else ("unrecognised", reason, None)."""
        parts = key.split("/")
        n = len(self.segments)
        if len(parts) <= n or any(s not in _FIELDS and s != p for s, p in zip(self.segments, parts)):
            return "unrecognised", f"does not lie under a partition folder {self.template}", None
        fields = {s: p for s, p in zip(self.segments, parts) if s in _FIELDS}
        try:
            region = validate_region_name(fields["{region}"])
            date = validate_date(fields["{date}"])
        except ValueError as exc:
            return "unrecognised", str(exc), None
        return ("item" if key.endswith(ITEM_SUFFIX) else "asset"), region, date


@dataclass(frozen=True)
class Arrival:
    """A new version of a scene's STAC item."""

    key: str
    version: str
    modified: float
    region: str
    date: str

    @property
    def ref(self) -> str:
        return f"{self.key}@{self.version}"

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class Pass:
    """A walk over keys taking the versions that arrived in [lo, hi); `after` is the last key done."""

    lo: float
    hi: float
    after: str = ""
    done: bool = False


@dataclass
class WatchState:
    hot: Pass
    sweep: Pass
    layout: str
    # (from, days): the lookback that classifies versions arrived from `from` on. A new setting takes
    # effect after every slice either pass has begun, so no version is classified twice.
    lookbacks: list[tuple[float, int]]

    def to_json(self) -> dict:
        return {
            "v": 1,
            "hot": asdict(self.hot),
            "sweep": asdict(self.sweep),
            "layout": self.layout,
            "lookbacks": [list(x) for x in self.lookbacks],
        }

    @classmethod
    def from_json(cls, data: dict) -> WatchState:
        if data.get("v") != 1:
            raise ValueError(f"unknown arrivals cursor version {data.get('v')!r}")
        return cls(Pass(**data["hot"]), Pass(**data["sweep"]), data["layout"], [tuple(x) for x in data["lookbacks"]])

    @classmethod
    def start(cls, since: float, layout: str, lookback_days: int) -> WatchState:
        """Versions that arrived from `since` on; both passes begin at the first tick."""
        return cls(Pass(since, since, done=True), Pass(since, since, done=True), layout, [(since, lookback_days)])

    def lookback(self, modified: float) -> int:
        days = self.lookbacks[0][1]
        for start, d in self.lookbacks:
            if start <= modified:
                days = d
        return days


@dataclass
class Tick:
    arrivals: list[Arrival] = field(default_factory=list)
    unrecognised: list[tuple[str, str]] = field(default_factory=list)  # (key, why)
    hot_requests: int = 0  # listing requests of the hot pass (region folders included)
    hot_listed: int = 0  # keys they returned
    sweep_requests: int = 0
    sweep_listed: int = 0
    hot_done: bool = False  # the hot pass finished in this tick (else it goes on at the next)
    sweep_passes: int = 0  # sweep passes finished in this tick

    @property
    def requests(self) -> int:
        return self.hot_requests + self.sweep_requests

    @property
    def listed(self) -> int:
        return self.hot_listed + self.sweep_listed


def recent(date: str, modified: float, lookback_days: int) -> bool:
    """Whether a version's date is at most `lookback_days` before the day it arrived."""
    arrived = datetime.fromtimestamp(modified, tz=UTC).date()
    return Date.fromisoformat(date) >= arrived - timedelta(days=lookback_days)


@dataclass(frozen=True)
class Watcher:
    layout: Layout
    lookback_days: int = 7
    settle_seconds: float = 300.0
    max_requests: int = 25  # hot-pass listing requests per tick
    sweep_seconds: float = 0.25  # listing time the sweep spends per tick (one page at least)
    max_arrivals: int = 1000  # item versions per tick; the rest come at the next
    page_size: int = PAGE  # keys per listing request

    @property
    def _moved_depth(self) -> int:
        """The parts of a partition folder's key: from that folder down, a folder's ctime stamps its files."""
        return len(self.layout.segments)

    def _start_key(self, state: WatchState) -> str:
        """What a root's listing starts after: past every key of the day before the oldest date that
        is recent for a version of this slice ('~' sorts after any key character). Not that date's
        own folder name, which SeaweedFS takes to mean after that whole folder."""
        days = max(d for _, d in state.lookbacks)
        day = datetime.fromtimestamp(state.hot.lo, tz=UTC).date() - timedelta(days=days + 1)
        return day.isoformat() + "~"

    def tick(self, store: Store, state: WatchState, now: float) -> Tick:
        """Go on with both passes, within this tick's budgets; `state` is updated in place."""
        if state.layout != self.layout.template:
            raise ValueError(
                f"the arrivals cursor was made for layout {state.layout!r}, not {self.layout.template!r}: "
                "reset the sensor's cursor to watch the new layout from now on"
            )
        if state.lookbacks[-1][1] != self.lookback_days:
            state.lookbacks.append((max(state.hot.hi, state.sweep.hi), self.lookback_days))
        tick = Tick()
        for name in ("hot", "sweep"):
            p = getattr(state, name)
            if p.done:  # the next pass takes the slice after the last one's
                setattr(state, name, Pass(p.hi, max(p.hi, now - self.settle_seconds)))
        oldest = min(state.hot.lo, state.sweep.lo)
        while len(state.lookbacks) > 1 and state.lookbacks[1][0] <= oldest:
            state.lookbacks.pop(0)  # no pass will meet a version from before the next one's start
        lo, hi = state.hot.lo, state.hot.hi  # the recent-dates pass's slice, before it goes on
        tick.hot_done = self._hot(store, state, tick)
        if tick.hot_done:  # once per slice: folders moved in above the partitions' are found by no pass
            moved = [
                (key, self._moved_above(changed))
                for key, changed in store.moved_folders(self.layout.prefix, self._moved_depth)
                if lo <= changed < hi
            ]
            tick.unrecognised[:0] = moved  # first: the log names the first keys only, and these but once
        if len(tick.arrivals) < self.max_arrivals:
            self._sweep(store, state, tick)
        return tick

    def _moved_above(self, changed: float) -> str:
        when = datetime.fromtimestamp(changed, tz=UTC).isoformat(timespec="seconds")
        return (
            f"a folder changed itself at {when} (moved in, chmod-ed, or copied with its times) above the "
            f"partition folders ({self.layout.template}): if it was moved in, its files keep their earlier "
            "ctimes and no scene under it is offered; move the partition folders in one by one, or `touch` "
            "their items"
        )

    def _take(self, state: WatchState, p: Pass, o: ObjectInfo, tick: Tick, recent_pass: bool) -> bool:
        """Take `o` if it is this pass's; False once the tick holds `max_arrivals`."""
        if not p.lo <= o.modified < p.hi:
            return True
        kind, region, date = self.layout.classify(o.key)
        if kind == "unrecognised":
            if not recent_pass:
                tick.unrecognised.append((o.key, region))
        elif kind == "item" and date and recent(date, o.modified, state.lookback(o.modified)) == recent_pass:
            tick.arrivals.append(Arrival(o.key, o.version, o.modified, region, date))
            if len(tick.arrivals) >= self.max_arrivals:
                p.after = o.key
                return False
        return True

    def _hot(self, store: Store, state: WatchState, tick: Tick) -> bool:
        p, start = state.hot, self._start_key(state)
        roots = self.layout.roots(store)
        tick.hot_requests += 1 if self.layout.region_first else 0  # the listing of region folders
        scans = 0
        for root in roots:
            if p.after > root and not p.after.startswith(root):
                continue  # finished earlier in this pass
            after = p.after if p.after.startswith(root) else root + start
            while True:
                if scans == self.max_requests:
                    p.after = max(p.after, after)
                    return False
                objects, more = store.scan(root.rstrip("/"), after, self.page_size, self._moved_depth)
                scans += 1
                tick.hot_requests += 1
                tick.hot_listed += len(objects)
                for o in objects:
                    if not self._take(state, p, o, tick, recent_pass=True):
                        return False
                if objects:
                    after = p.after = objects[-1].key
                if not more:
                    break
        p.done = True
        return True

    def _sweep(self, store: Store, state: WatchState, tick: Tick) -> None:
        p = state.sweep
        began = time.monotonic()
        while tick.sweep_requests == 0 or time.monotonic() - began < self.sweep_seconds:
            objects, more = store.scan(self.layout.prefix, p.after, self.page_size, self._moved_depth)
            tick.sweep_requests += 1
            tick.sweep_listed += len(objects)
            for o in objects:
                if not self._take(state, p, o, tick, recent_pass=False):
                    return
            if objects:
                p.after = objects[-1].key
            if not more:
                p.done = True
                tick.sweep_passes += 1
                return
