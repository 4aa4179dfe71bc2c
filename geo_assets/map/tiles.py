"""Web Mercator map tiles and point values, read by rio-tiler from the store's COGs.

Imagery has no mosaic COG: a map tile is mosaicked from the imagery tiles under it (rio-tiler's
mosaic reader), at most MAX_SOURCES of them, so a zoomed-out view is refused rather than reading a
region. Predictions are read from their mosaic COG (overviews serve the zoomed-out views).
"""

from __future__ import annotations

import morecantile
import numpy as np
from rio_tiler.errors import EmptyMosaicError, PointOutsideBounds, TileOutsideBounds
from rio_tiler.io import Reader
from rio_tiler.models import ImageData
from rio_tiler.mosaic import mosaic_reader

from geo_assets.geo.landcover import CLASSES
from geo_assets.geo.store import Store
from geo_assets.map import layers
from geo_assets.map.layers import NotFound

MIN_ZOOM, MAX_ZOOM = 6, 22  # coarser than 6 a map tile spans more than a region is ever cut into
MAX_SOURCES = 64  # imagery tiles read for one map tile
TILE_PX = 256
WEB_MERCATOR = morecantile.tms.get("WebMercatorQuad")


def check_tile(z: int, x: int, y: int) -> None:
    if not MIN_ZOOM <= z <= MAX_ZOOM:
        raise layers.BadRequest(f"zoom {z} is out of bounds: the map serves zoom {MIN_ZOOM} to {MAX_ZOOM}")
    if not (0 <= x < 2**z and 0 <= y < 2**z):
        raise layers.BadRequest(f"tile {z}/{x}/{y} does not exist: x and y run from 0 to {2**z - 1} at zoom {z}")


def _png(image: ImageData, **kwargs) -> bytes:
    return image.render(img_format="PNG", **kwargs)


def imagery_tile(store: Store, imagery: layers.Imagery, composite: str, z: int, x: int, y: int) -> bytes:
    """A true- or false-colour tile, stretched as the imagery version's own pixels are."""
    check_tile(z, x, y)
    indexes = imagery.band_indexes(composite)
    bounds = WEB_MERCATOR.bounds(morecantile.Tile(x, y, z))
    sources = imagery.tiles_over(store, (bounds.left, bounds.bottom, bounds.right, bounds.top))
    if not sources:
        raise NotFound(f"no imagery under tile {z}/{x}/{y}")
    if len(sources) > MAX_SOURCES:
        raise layers.BadRequest(
            f"tile {z}/{x}/{y} covers {len(sources)} imagery tiles, more than the {MAX_SOURCES} "
            "read for one map tile: zoom in"
        )

    def read(path: str, *args, **kwargs) -> ImageData:
        with layers.open_cog(path) as dataset, Reader(None, dataset=dataset, tms=WEB_MERCATOR) as src:
            return src.tile(*args, indexes=indexes, tilesize=TILE_PX, **kwargs)

    with store.env():
        try:  # threads=0: read in this thread, inside the store's GDAL settings
            image, _ = mosaic_reader(sources, read, x, y, z, threads=0)
        except EmptyMosaicError:
            raise NotFound(f"no imagery under tile {z}/{x}/{y}") from None
    image = image.rescale(in_range=layers.stretch(store, imagery, indexes))
    return _png(image)


def _class_tile(store: Store, manifest: dict, z: int, x: int, y: int) -> ImageData:
    with (
        store.env(),
        layers.open_cog(layers.mosaic_path(store, manifest)) as dataset,
        Reader(None, dataset=dataset, tms=WEB_MERCATOR) as src,
    ):
        try:
            return src.tile(x, y, z, indexes=1, tilesize=TILE_PX, resampling_method="nearest")
        except TileOutsideBounds:
            raise NotFound(f"no predictions under tile {z}/{x}/{y}") from None


def class_tile(store: Store, manifest: dict, z: int, x: int, y: int) -> bytes:
    """Predicted classes in the legend's colours; no-data transparent."""
    check_tile(z, x, y)
    return _png(_class_tile(store, manifest, z, x, y), colormap=layers.colormap())


def difference_tile(store: Store, now: dict, before: dict, z: int, x: int, y: int) -> bytes:
    """Where the class changed from `before` to `now`, in the colour of the class it became; the rest
    (unchanged, or no data in either) transparent."""
    check_tile(z, x, y)
    a, b = _class_tile(store, now, z, x, y), _class_tile(store, before, z, x, y)
    valid = ~np.ma.getmaskarray(a.array[0]) & ~np.ma.getmaskarray(b.array[0])
    changed = valid & (np.asarray(a.array[0]) != np.asarray(b.array[0]))
    data = np.ma.MaskedArray(np.asarray(a.array[:1]), mask=~changed[None])
    return _png(ImageData(data, bounds=a.bounds, crs=a.crs), colormap=layers.colormap())


def class_at(store: Store, manifest: dict, lon: float, lat: float) -> dict:
    """The predicted class at a longitude/latitude."""
    if not (-180 <= lon <= 180 and -90 <= lat <= 90):
        raise layers.BadRequest(f"lon {lon}, lat {lat} is not a place: lon in [-180, 180], lat in [-90, 90]")
    with (
        store.env(),
        layers.open_cog(layers.mosaic_path(store, manifest)) as dataset,
        Reader(None, dataset=dataset) as src,
    ):
        try:
            point = src.point(lon, lat, indexes=1)
        except PointOutsideBounds:
            raise NotFound(f"no predictions at lon {lon}, lat {lat}") from None
    value = int(np.asarray(point.data)[0])
    if bool(np.ma.getmaskarray(point.array)[0]) or value >= len(CLASSES):
        return {"lon": lon, "lat": lat, "value": None, "class": None}
    return {"lon": lon, "lat": lat, "value": value, "class": CLASSES[value]}
