"""The model settings a user chooses, and their bounds, without importing torch.

Run config is built in every process that loads the code location (the webserver, the daemon, each
run and step, the CLI); reading names and ranges from here keeps torch, about a second of import,
out of those that never touch a model.
"""

from __future__ import annotations

from geo_assets.settings import by_name

ARCHITECTURE_NAMES = ("unet", "fcn")  # geo_assets.ml.models.ARCHITECTURES builds them
# Each hyperparameter's accepted range: past these a model stops fitting in memory (a U-Net's widths
# double at every level: depth 99 would ask for 16 * 2**99 channels) or stops making sense.
HYPERPARAMETERS: dict[str, dict[str, tuple[int, int]]] = {
    "unet": {"base_channels": (1, 256), "depth": (1, 6)},
    "fcn": {"hidden_channels": (1, 1024), "num_layers": (1, 64)},
}
MAX_PARAMETERS = 50_000_000  # 200 MB of float32 weights; the demo's U-Net has about 120 thousand
RUNTIMES = ("auto", "torch", "onnxruntime")  # inference runtimes (geo_assets.ml.runtime)
ENV_VAR = "GEO_ASSETS_INFERENCE_RUNTIME"  # declared in geo_assets/settings.py
MAX_BATCH = 256  # tiles per forward pass


def requested(name: str | None = None) -> str:
    """The runtime asked for: `name`, else GEO_ASSETS_INFERENCE_RUNTIME, else auto; unknown names refused."""
    source = "config" if name else ENV_VAR
    name = name or by_name(ENV_VAR).get()
    if name not in RUNTIMES:
        raise ValueError(f"unknown inference runtime {name!r} (from {source}); accepted: {', '.join(RUNTIMES)}")
    return name
