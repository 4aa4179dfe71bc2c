"""region_report: class areas, a preview and a short summary for one region and date."""


import base64

import dagster as dg

from geo_assets.assets.common import output, tag_run
from geo_assets.geo.preview import class_colours, side_by_side_png, true_colour
from geo_assets.partitions import region_and_date, region_date_partitions
from resources.storage import StorageResource


@dg.asset(partitions_def=region_date_partitions, group_name="predictions", kinds={"python", "markdown"})
def region_report(
    context: dg.AssetExecutionContext, storage: StorageResource, predictions: dict, imagery_tiles: dict
) -> dg.Output[dict]:
    """Area per class in km², imagery beside prediction as a PNG, and a markdown summary."""
    region, date = region_and_date(context)
    store = storage.store()
    tag_run(context, region=region, date=date, source=predictions["source"], model=predictions["model"], model_version=predictions["version"])
    pixel_km2 = predictions["resolution"] ** 2 / 1e6
    areas = {c: round(n * pixel_km2, 4) for c, n in predictions["class_counts"].items()}
    with store.env():
        rgb = true_colour([(store.path(t["path"]), t["bounds"]) for t in imagery_tiles["tiles"]], imagery_tiles["bands"])
        classes = class_colours(store.path(predictions["mosaic"]), rgb.shape[:2])
    png = side_by_side_png(rgb, classes)
    prefix = f"reports/{predictions['model']}/{predictions['version']}/{region}/{date}"
    store.write_bytes(f"{prefix}/preview.png", png)
    rows = "\n".join(f"| {c} | {a:.3f} |" for c, a in areas.items())
    summary = (
        f"# {region}, {date}\n\n"
        f"Model `{predictions['model']}` version `{predictions['version']}` on `{predictions['source']}` imagery, "
        f"{len(predictions['tiles'])} tiles, {imagery_tiles['crs']} at {predictions['resolution']:g} m.\n\n"
        f"| class | area (km²) |\n|---|---|\n{rows}\n"
    )
    store.write_bytes(f"{prefix}/report.md", summary.encode())
    image = f"![imagery and prediction](data:image/png;base64,{base64.b64encode(png).decode()})"
    manifest = {"region": region, "date": date, "areas_km2": areas, "preview": f"{prefix}/preview.png", "report": f"{prefix}/report.md"}
    return output(
        manifest,
        {
            "areas_km2": dg.MetadataValue.json(areas),
            "preview": dg.MetadataValue.md(summary + "\n" + image),
            "report": dg.MetadataValue.path(store.uri(f"{prefix}/report.md")),
        },
    )
