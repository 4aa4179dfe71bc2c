"""Tiles read with a margin: the neighbours' pixels where they exist, the tile mirrored where they do not."""

import numpy as np
import pytest
from affine import Affine

from geo_assets.geo.cog import CorruptRasterError, write_cog
from geo_assets.geo.margins import TileCache, read_with_margin, with_neighbours

PX, COLS, ROWS, M = 32, 3, 3, 8


@pytest.fixture
def grid(tmp_path):
    """A 3 x 3 grid of 2-band tiles cut from one array, as manifest entries."""
    full = np.random.default_rng(0).integers(1, 10_000, (2, ROWS * PX, COLS * PX), dtype=np.uint16)
    entries = []
    for r in range(ROWS):
        for c in range(COLS):
            path = tmp_path / f"{c}_{r}.tif"
            write_cog(
                path,
                full[:, r * PX : (r + 1) * PX, c * PX : (c + 1) * PX],
                "EPSG:32631",
                Affine(10, 0, 1000 + c * PX * 10, 0, -10, 5000 - r * PX * 10),
                0,
                ["red", "nir"],
            )
            entries.append({"key": f"{c}_{r}", "path": str(path)})
    return full, entries


def test_an_inner_tile_reads_its_neighbours_pixels(grid):
    full, entries = grid
    centre = with_neighbours(entries)[4]  # 1_1
    assert sorted(centre["neighbours"]) == sorted(f"{dc},{dr}" for dr in (-1, 0, 1) for dc in (-1, 0, 1) if dc or dr)
    data, profile = read_with_margin(str, centre, M)
    np.testing.assert_array_equal(data, full[:, PX - M : 2 * PX + M, PX - M : 2 * PX + M])
    assert profile["transform"] == Affine(10, 0, 1000 + PX * 10, 0, -10, 5000 - PX * 10)  # the tile's own


def test_past_the_region_s_edge_the_margin_mirrors_the_tile(grid):
    full, entries = grid
    listed = with_neighbours(entries)
    assert sorted(listed[0]["neighbours"]) == ["0,1", "1,0", "1,1"]  # 0_0: east, south and south-east only
    # Every tile's window is the window of the region's mosaic padded by reflection (np.pad's rule).
    padded = np.pad(full, ((0, 0), (M, M), (M, M)), mode="reflect")
    for entry in listed:
        c, r = (int(v) for v in entry["key"].split("_"))
        data, _ = read_with_margin(str, entry, M)
        np.testing.assert_array_equal(data, padded[:, r * PX : (r + 1) * PX + 2 * M, c * PX : (c + 1) * PX + 2 * M])


def test_a_cache_reads_each_tile_once_and_changes_no_pixel(grid):
    _, entries = grid
    listed = with_neighbours(entries)
    alone = [read_with_margin(str, e, M)[0] for e in listed]
    cache, small = TileCache(), TileCache(max_bytes=2 * PX * PX * 2 * 2)  # room for two tiles only
    for entry, expected in zip(listed, alone):
        np.testing.assert_array_equal(read_with_margin(str, entry, M, cache)[0], expected)
        np.testing.assert_array_equal(read_with_margin(str, entry, M, small)[0], expected)
    assert cache.reads == len(entries)  # instead of 49 tile reads (each tile and its neighbours)
    assert len(entries) < small.reads < 49


def test_a_lone_tile_is_padded_as_np_pad_reflect(grid):
    full, entries = grid
    data, _ = read_with_margin(str, with_neighbours(entries[:1])[0], M)
    np.testing.assert_array_equal(data, np.pad(full[:, :PX, :PX], ((0, 0), (M, M), (M, M)), mode="reflect"))


def test_listed_neighbours_are_kept_for_a_chunk_of_the_region(grid):
    _, entries = grid
    whole = with_neighbours(entries)
    assert with_neighbours(whole[4:5]) == whole[4:5]  # a chunk of one tile still reads the whole ring


def test_bad_keys_margins_and_neighbours_are_named(grid, tmp_path):
    _, entries = grid
    with pytest.raises(ValueError, match="'tile-a' is not a grid key col_row"):
        with_neighbours([{"key": "tile-a", "path": "x"}])
    with pytest.raises(ValueError, match="margin must be an integer between 0 and 16 px"):
        read_with_margin(str, entries[0], 17)
    broken = tmp_path / "1_0.tif"
    broken.write_bytes(b"not a tiff")
    with pytest.raises(CorruptRasterError, match="neighbour .*1_0.tif of tile 0_0"):
        read_with_margin(str, with_neighbours(entries)[0], M)
