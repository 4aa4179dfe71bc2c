"""The land-cover legend shared by labels, models and predictions."""

CLASSES: tuple[str, ...] = ("water", "vegetation", "built-up", "bare-soil", "cloud")
IGNORE = 255  # label value for "no label here" (outside polygons, nodata)

# Display colours (RGB) for previews, one per class.
COLOURS: tuple[tuple[int, int, int], ...] = (
    (30, 90, 200),
    (40, 150, 60),
    (200, 60, 60),
    (190, 160, 110),
    (240, 240, 240),
)

# Reflectance bands are stored as DN = reflectance x 10000 (Sentinel-2 L2A convention).
REFLECTANCE_SCALE = 10000.0
