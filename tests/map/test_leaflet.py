"""The map page's Leaflet comes from npm only when its tarball has the pinned integrity."""

from __future__ import annotations

import pytest

from devtools import leaflet


def test_leaflet_is_installed_only_with_its_pinned_integrity(tmp_path, monkeypatch):
    monkeypatch.setattr(leaflet, "INTEGRITY", "sha512-" + "A" * 86 + "==")  # any other tarball
    with pytest.raises(RuntimeError, match="not the pinned"):
        leaflet.install(tmp_path / "leaflet")
    assert not (tmp_path / "leaflet").exists()
    monkeypatch.undo()
    installed = leaflet.install(tmp_path / "leaflet")
    assert (installed / "leaflet.js").is_file() and (installed / "images" / "layers.png").is_file()
    assert not list(installed.rglob("*.map")) and (installed / "VERSION").read_text().strip() == leaflet.VERSION
