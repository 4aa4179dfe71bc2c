// The map page: one acquisition's imagery as the base layer, a model version's predictions (and their
// difference from another date or version) over it, the region's footprint and tile grid, a legend,
// and the class at a clicked pixel. Everything comes from this server's /api/view; tiles and vectors
// draw without WebGL (Leaflet's canvas renderer), so a headless browser shows what a user sees.
(function () {
  "use strict";
  const params = new URLSearchParams(window.location.search);
  const $ = (id) => document.getElementById(id);

  function fail(message) {
    $("error").hidden = false;
    $("error").textContent = message;
    document.body.dataset.state = "error";
  }

  async function getJSON(url) {
    const response = await fetch(url);
    const body = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(body.error || `${response.status} ${response.statusText}`);
    return body;
  }

  function legendRows(legend) {
    $("legend").innerHTML = "";
    for (const entry of legend) {
      const row = $("legend").insertRow();
      const swatch = row.insertCell();
      swatch.className = "swatch";
      swatch.style.background = entry.colour;
      row.insertCell().textContent = entry.class;
    }
  }

  function describeModel(record) {
    const evaluations = record.evaluations.filter((e) => e.miou !== null);
    const evaluated = evaluations.length
      ? evaluations.map((e) => `mIoU ${e.miou.toFixed(3)} on ${(e.regions || []).join("+")} (gate ${e.min_miou}: ${e.passed ? "passed" : "failed"})`).join("; ")
      : "not evaluated";
    $("model").innerHTML = "";
    const line = document.createElement("div");
    line.innerHTML = "Model <b></b> version <code></code> (<span></span>)<br>Evaluation: <span></span>";
    const [name, version, architecture, evaluation] = line.querySelectorAll("b, code, span");
    name.textContent = record.model;
    version.textContent = record.version;
    architecture.textContent = record.architecture || "?";
    evaluation.textContent = evaluated;
    $("model").appendChild(line);
  }

  async function main() {
    const region = params.get("region"), date = params.get("date");
    if (!region || !date) return fail("Name an acquisition: /map?region=R&date=YYYY-MM-DD[&model=M&version=V]");
    const view = await getJSON(`api/view?${params.toString()}`);
    $("title").textContent = `${view.region}, ${view.date}`;
    legendRows(view.legend);

    const map = L.map("map", { preferCanvas: true, minZoom: view.zoom[0], maxZoom: view.zoom[1], zoomSnap: 1 });
    const tiles = (template, options) => L.tileLayer(template, { maxZoom: view.zoom[1], minZoom: view.zoom[0],
                                                                tileSize: 256, ...options });
    const bases = {};
    if (view.basemap) bases["Base map"] = tiles(view.basemap, { attribution: "base map" });
    const names = { "true-colour": "Imagery, true colour", "false-colour": "Imagery, false colour (NIR, red, green)" };
    for (const [composite, template] of Object.entries(view.imagery.layers)) bases[names[composite]] = tiles(template);
    const overlays = {};
    const footprint = L.geoJSON(view.footprint, { style: { color: "#ffcc00", weight: 2, fill: false } });
    const grid = L.geoJSON(view.grid, { style: { color: "#ffffff", weight: 1, opacity: 0.6, fill: false } });
    let predictions = null, difference = null;
    if (view.predictions) {
      predictions = tiles(view.predictions.tiles, { opacity: Number($("opacity").value) });
      overlays["Predictions"] = predictions;
      describeModel(view.predictions.model);
      $("opacity-control").hidden = false;
      $("opacity").addEventListener("input", (e) => {
        for (const layer of [predictions, difference]) if (layer) layer.setOpacity(Number(e.target.value));
      });
    }
    if (view.difference) {
      difference = tiles(view.difference.tiles, { opacity: Number($("opacity").value) });
      overlays[`Changed since ${view.difference.against_date} (${view.difference.against_version})`] = difference;
    }
    overlays["Region footprint"] = footprint;
    overlays["Tile grid"] = grid;

    const first = bases[names["true-colour"]] || Object.values(bases)[0];
    first.addTo(map);
    if (predictions) predictions.addTo(map);
    footprint.addTo(map);
    grid.addTo(map);
    L.control.layers(bases, overlays, { collapsed: false }).addTo(map);
    L.control.scale().addTo(map);
    map.fitBounds(footprint.getBounds());

    if (view.predictions) {
      map.on("click", async (event) => {
        const { lat, lng } = event.latlng;
        try {
          const answer = await getJSON(`${view.predictions.class}&lon=${lng}&lat=${lat}`);
          const text = answer.class ? `${answer.class} at ${lng.toFixed(6)}, ${lat.toFixed(6)}` : "no data at that pixel";
          $("clicked").textContent = text;
          $("clicked").dataset.answered = `${lng},${lat}`;
          L.popup().setLatLng(event.latlng).setContent(text).openOn(map);
        } catch (error) {
          $("clicked").textContent = error.message;
          $("clicked").dataset.answered = "error";
        }
      });
    }
    window.geoMap = { map, bases, overlays };  // for scripts and tests that drive the page
    document.body.dataset.state = "ready";
  }

  main().catch((error) => fail(`The map could not load: ${error.message}`));
})();
