"""The README's screenshot of the map (docs/images/map.png), taken from a real run's outputs.

After `make demo` (or any run that predicted the region and date), from the checkout's root:

    .venv/bin/python -m devtools.map_screenshot [--region synth-holdout] [--date 2024-06-01]
        [--model landcover-unet] [--version V] [--out docs/images/map.png]

It serves the map over the profile's store (`geo-assets map-server`, as `make dev` does), asks
`geo-assets map` for the link of the model's serving version (or V), opens that link in Debian's
Chromium (devtools/chromium.py), clicks the middle of the map so the popup names a class, and
saves the page once every tile has loaded. Leaflet is fetched first (devtools/leaflet.py, npm).
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import time
from pathlib import Path

import requests

from devtools import chromium, leaflet
from devtools.emulators import free_port, running

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
OUT = ROOT / "docs" / "images" / "map.png"
# The page sets data-state once it has read its view; Leaflet's tile layers say when they have loaded.
TILES_LOADED = """() => {
    const m = window.geoMap && window.geoMap.map;
    if (!m) return false;
    let done = true;
    m.eachLayer(l => { if (l instanceof L.TileLayer && l.isLoading()) done = false; });
    return done;
}"""


def link(region: str, date: str, model: str, version: str | None, env: dict) -> str:
    """What `geo-assets map` prints: it refuses, naming why, a region, date or version with nothing stored."""
    cmd = [BIN / "geo-assets", "map", region, date, "--model", model, *(["--version", version] if version else [])]
    proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise SystemExit(f"devtools.map_screenshot: no map to show: {proc.stderr.strip()} (run `make demo` first?)")
    return proc.stdout.strip()


def wait_healthy(url: str, proc: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if requests.get(f"{url}/healthz", timeout=2).ok:
                return
        except requests.RequestException:
            pass
        time.sleep(0.3)
    raise SystemExit(f"devtools.map_screenshot: the map server did not start: {log.read_text()[-2000:]}")


def screenshot(url: str, out: Path, width: int = 1280, height: int = 760) -> None:
    from PIL import Image

    with chromium.headless(chromium.install()) as browser:
        page = browser.new_page(viewport={"width": width, "height": height})
        page.set_default_timeout(120_000)
        page.goto(url)
        page.wait_for_function("document.body.dataset.state === 'ready' || document.body.dataset.state === 'error'")
        if page.evaluate("document.body.dataset.state") != "ready":
            raise SystemExit(f"devtools.map_screenshot: the map page failed: {page.locator('#error').text_content()}")
        page.wait_for_function(TILES_LOADED)
        box = page.locator("#map").bounding_box()
        page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)  # the class at a pixel
        page.locator("#clicked[data-answered]").wait_for()
        page.wait_for_function(TILES_LOADED)
        page.wait_for_timeout(400)  # the last tile's fade-in and the popup's
        data = page.screenshot(animations="disabled")
    out.parent.mkdir(parents=True, exist_ok=True)
    # A palette of 256 colours: the map's flat class colours survive, the file is a fraction of the size.
    Image.open(io.BytesIO(data)).convert("RGB").quantize(256).save(out, optimize=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m devtools.map_screenshot", description=__doc__.split("\n\n")[0])
    p.add_argument("--region", default="synth-holdout")
    p.add_argument("--date", default="2024-06-01")
    p.add_argument("--model", default="landcover-unet")
    p.add_argument("--version", help="a stored version (default: the model's serving one)")
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args(argv)
    leaflet.install()
    port = free_port()
    env = {**os.environ, "GEO_ASSETS_MAP_URL": f"http://127.0.0.1:{port}"}
    url = link(args.region, args.date, args.model, args.version, env)
    log = ROOT / ".cache" / "map-screenshot" / "map-server.log"
    with running([BIN / "geo-assets", "map-server", "--port", str(port)], log, env, cwd=ROOT) as proc:
        wait_healthy(f"http://127.0.0.1:{port}", proc, log)
        screenshot(url, args.out)
    print(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
