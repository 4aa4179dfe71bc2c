"""Pure geospatial code: tiling grids, COG I/O, imagery sources. Never imports dagster."""
