"""The map page's Leaflet comes from npm only when its tarball has the pinned integrity."""

from __future__ import annotations

import pytest

from devtools import leaflet


def test_leaflet_is_installed_only_with_its_pinned_integrity(tmp_path, monkeypatch):
    monkeypatch.setattr(leaflet, "TARGET", tmp_path / "leaflet")
    monkeypatch.setattr(leaflet, "STAMP", tmp_path / "leaflet" / "VERSION")
    monkeypatch.setattr(leaflet, "INTEGRITY", "sha512-" + "A" * 86 + "==")  # any other tarball
    with pytest.raises(RuntimeError, match="not the pinned"):
        leaflet.install()
    assert not (tmp_path / "leaflet").exists()
    monkeypatch.undo()
    monkeypatch.setattr(leaflet, "TARGET", tmp_path / "leaflet")
    monkeypatch.setattr(leaflet, "STAMP", tmp_path / "leaflet" / "VERSION")
    installed = leaflet.install()
    assert (installed / "leaflet.js").is_file() and (installed / "images" / "layers.png").is_file()
    assert not list(installed.rglob("*.map")) and (installed / "VERSION").read_text().strip() == leaflet.VERSION
