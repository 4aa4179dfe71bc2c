"""Tiles read with a margin from their neighbours on the grid, so a model sees across tile edges.

Tiles of one grid abut exactly (same size, same pixel lattice), so a tile's margin is the edge strips
of the up to eight tiles around it, each read as a window of its own COG: no mosaic of the region is
ever built. Where a neighbour is absent (the region's edge), the margin mirrors the pixels inside it
(reflect, as a lone tile is padded): at the region's edge a window is exactly that of the region's
mosaic padded by reflection.

Tiles are predicted in grid order, so the tile read as a centre now is a neighbour of the next tiles
and of the next row's: a `TileCache` (per prediction call, bounded in bytes) keeps decoded tiles so
that each is read about once rather than up to nine times.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from geo_assets.geo.cog import CorruptRasterError, read_raster
from geo_assets.geo.integrity import check_pixels

CACHE_BYTES = 128 * 2**20  # decoded tiles kept per prediction call: two rows of a 86-tile-wide region of 256 px tiles
MAX_MARGIN = 256  # pixels: a margin reads the ring of tiles around a tile, never further
DEFAULT_MARGIN = 32  # pixels: the demo U-Net's reach; a multiple of every zoo model's pad multiple up to depth 5
AROUND = [(dc, dr) for dr in (-1, 0, 1) for dc in (-1, 0, 1) if (dc, dr) != (0, 0)]


def grid_index(key: str) -> tuple[int, int]:
    """(col, row) of a grid tile key `col_row` (geo.grid.Tile.key); rows grow southwards."""
    try:
        col, row = key.split("_")
        return int(col), int(row)
    except ValueError:
        raise ValueError(f"tile key {key!r} is not a grid key col_row: cannot find its neighbours") from None


def with_neighbours(entries: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Manifest entries, each with `neighbours`: {"dc,dr": path} of the entries around it on the grid,
    and `neighbour_digests`: {"dc,dr": pixel digest} of those whose entry records one (checked on read).
    An entry that already lists its neighbours keeps them (a chunk of a region carries the whole region's)."""
    by_index = {grid_index(e["key"]): e for e in entries}
    out: list[dict[str, Any]] = []
    for entry in entries:
        if "neighbours" in entry:
            out.append(dict(entry))
            continue
        col, row = grid_index(entry["key"])
        around = {f"{dc},{dr}": by_index[(col + dc, row + dr)] for dc, dr in AROUND if (col + dc, row + dr) in by_index}
        out.append(
            {
                **entry,
                "neighbours": {name: e["path"] for name, e in around.items()},
                "neighbour_digests": {name: e["digest"] for name, e in around.items() if "digest" in e},
            }
        )
    return out


def default_margin(tile_size: int) -> int:
    """DEFAULT_MARGIN, or for tiles under twice that, half the tile rounded down to a multiple of 8."""
    return min(DEFAULT_MARGIN, tile_size // 2 // 8 * 8)


def check_margin(margin: int, tile: int) -> int:
    most = min(MAX_MARGIN, tile // 2)
    if not isinstance(margin, int) or isinstance(margin, bool) or not 0 <= margin <= most:
        raise ValueError(
            f"margin must be an integer between 0 and {most} px "
            f"(at most {MAX_MARGIN} and half the tile's {tile} px), got {margin!r}"
        )
    return margin


class TileCache:
    """Decoded tiles by path, the least recently used dropped first past `max_bytes`; thread-safe.
    Lives for one prediction call: tiles are never replaced under it."""

    def __init__(self, max_bytes: int = CACHE_BYTES) -> None:
        self.max_bytes = max_bytes
        self._tiles: OrderedDict[str, tuple[np.ndarray, dict]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.reads = 0  # tiles read from their files (the rest came from the cache)

    def read(self, path: str, digest: str | None = None, what: str = "") -> tuple[np.ndarray, dict]:
        """The tile at `path`, its pixels checked against `digest` (geo.integrity) when read from the file."""
        with self._lock:
            if path in self._tiles:
                self._tiles.move_to_end(path)
                return self._tiles[path]
        data, profile = read_raster(path)
        check_pixels(what or f"tile {path}", data, digest)  # once per decode: cached tiles were checked
        data.flags.writeable = False  # shared between windows
        with self._lock:
            self.reads += 1
            if path not in self._tiles and data.nbytes <= self.max_bytes:
                self._tiles[path] = (data, profile)
                self._bytes += data.nbytes
                while self._bytes > self.max_bytes:
                    self._bytes -= self._tiles.popitem(last=False)[1][0].nbytes
        return data, profile


def _span(d: int, size: int, margin: int) -> tuple[slice, slice]:
    """(rows or cols in the neighbour's file, the same in the window) for offset d in -1, 0, 1."""
    if d < 0:
        return slice(size - margin, size), slice(0, margin)
    if d > 0:
        return slice(0, margin), slice(margin + size, 2 * margin + size)
    return slice(0, size), slice(margin, margin + size)


def read_with_margin(path_of, entry: dict, margin: int, cache: TileCache | None = None) -> tuple[np.ndarray, dict]:
    """(bands, T + 2m, T + 2m) pixels of a tile and its margin, and the tile's own profile.

    `path_of(key)` turns a store key into a path GDAL opens; the entry's `neighbours` name the tiles
    around it; `cache` (default: none kept) serves tiles read before.
    """
    cache = cache or TileCache(0)
    data, profile = cache.read(
        path_of(entry["path"]), entry.get("digest"), f"imagery tile {entry['key']} ({path_of(entry['path'])})"
    )
    bands, size, width = data.shape
    if size != width:
        raise ValueError(f"tile {entry['key']} is {width} x {size} px: margins need square grid tiles")
    check_margin(margin, size)
    if margin == 0:
        return np.array(data), profile
    m = margin
    out = np.empty((bands, size + 2 * m, size + 2 * m), dtype=data.dtype)
    out[:, m : m + size, m : m + size] = data
    have = set()
    digests = entry.get("neighbour_digests", {})
    for name, key in entry.get("neighbours", {}).items():
        dc, dr = (int(v) for v in name.split(","))
        (src_rows, rows), (src_cols, cols) = _span(dr, size, m), _span(dc, size, m)
        try:
            tile = cache.read(
                path_of(key),
                digests.get(name),
                f"imagery tile {path_of(key)}, neighbour {name} of tile {entry['key']},",
            )[0]
        except CorruptRasterError as exc:
            raise CorruptRasterError(f"cannot read neighbour {path_of(key)} of tile {entry['key']}: {exc}") from None
        if tile.shape != data.shape:
            raise ValueError(
                f"neighbour {key} is {' x '.join(map(str, tile.shape))} px, tile {entry['key']} "
                f"{bands} x {size} x {size}: not one grid"
            )
        out[:, rows, cols] = tile[:, src_rows, src_cols]
        have.add((dc, dr))
    # Absent sides mirror the tile. An absent corner mirrors the strip beside it across the edge
    # that has no neighbour (as np.pad's reflect does at the region's edge).
    if (0, -1) not in have:
        out[:, :m, m : m + size] = data[:, m:0:-1]
    if (0, 1) not in have:
        out[:, m + size :, m : m + size] = data[:, size - 2 : size - 2 - m : -1]
    if (-1, 0) not in have:
        out[:, m : m + size, :m] = data[:, :, m:0:-1]
    if (1, 0) not in have:
        out[:, m : m + size, m + size :] = data[:, :, size - 2 : size - 2 - m : -1]
    # (the margin's rows or cols, the rows or cols it mirrors) before (-1) and after (1) the tile; the window is square
    mirror = {-1: (slice(0, m), slice(2 * m, m, -1)), 1: (slice(m + size, None), slice(m + size - 2, size - 2, -1))}
    for dc, dr in ((-1, -1), (1, -1), (-1, 1), (1, 1)):
        if (dc, dr) in have:
            continue
        (rows, rows_from), (cols, cols_from) = mirror[dr], mirror[dc]
        if (0, dr) not in have:  # nothing beyond the tile's north/south edge: mirror rows across it
            out[:, rows, cols] = out[:, rows_from, cols]
        else:  # nothing beyond its west/east edge: mirror columns across it
            out[:, rows, cols] = out[:, rows, cols_from]
    return out, profile
