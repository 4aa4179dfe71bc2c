"""The map server opens stored tiles as GeoTIFF only: a ".tif" in the store that is really a VRT (which
anyone with write access could put there) would otherwise make GDAL read files outside the storage root."""

import numpy as np
import pytest
import rasterio
from rasterio.errors import RasterioIOError
from rasterio.transform import from_origin

from geo_assets.map.layers import open_cog


def test_a_vrt_disguised_as_a_stored_tile_is_not_opened(tmp_path):
    outside = tmp_path / "outside.tif"
    with rasterio.open(
        outside,
        "w",
        driver="GTiff",
        width=4,
        height=4,
        count=1,
        dtype="uint8",
        crs="EPSG:32631",
        transform=from_origin(400000, 5121280, 10, 10),
    ) as dst:
        dst.write(np.full((1, 4, 4), 42, dtype="uint8"))
    disguised = tmp_path / "storage" / "imagery" / "tile.tif"
    disguised.parent.mkdir(parents=True)
    disguised.write_text(f"""<VRTDataset rasterXSize="4" rasterYSize="4">
  <VRTRasterBand dataType="Byte" band="1"><SimpleSource>
    <SourceFilename relativeToVRT="0">{outside}</SourceFilename><SourceBand>1</SourceBand>
  </SimpleSource></VRTRasterBand>
</VRTDataset>""")
    with rasterio.open(disguised) as src:  # what GDAL does when it picks the driver from the content
        assert src.driver == "VRT" and int(src.read(1)[0, 0]) == 42
    with pytest.raises(RasterioIOError):
        with open_cog(str(disguised)):
            pass
    with open_cog(str(outside)) as src:  # a real GeoTIFF opens
        assert src.driver == "GTiff"
