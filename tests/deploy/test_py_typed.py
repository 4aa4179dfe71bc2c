"""The wheel carries geo_assets' `py.typed` marker, so a type checker reads the package's annotations
where it is installed (PEP 561)."""

import zipfile


def test_wheel_has_py_typed(wheel):
    assert "geo_assets/py.typed" in zipfile.ZipFile(wheel).namelist()
