"""The docs start where users start: a short README, and pages whose links hold, built as a site by `make docs`."""

import subprocess
import sys

from devtools import docs


def test_the_readme_is_short():
    lines = len((docs.ROOT / "README.md").read_text().splitlines())
    assert lines <= 250, f"README.md has {lines} lines: move the detail into docs/"


def test_the_docs_build_with_every_link_and_anchor_holding(tmp_path):
    """MkDocs in strict mode (mkdocs.yml) fails on a link to a missing page or anchor and on a page left out
    of the navigation; the pages are read at their repository paths (devtools/mkdocs_hooks.py)."""
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
        cwd=docs.ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    built = {p.relative_to(tmp_path / "site").as_posix() for p in (tmp_path / "site").rglob("index.html")}
    for page in docs.pages():
        path = page.relative_to(docs.ROOT).with_suffix("")
        expected = "index.html" if path.as_posix() == "README" else f"{path.as_posix()}/index.html"
        if path.name == "README" and path.parent.as_posix() != ".":
            expected = f"{path.parent.as_posix()}/index.html"
        assert expected in built, f"{page.relative_to(docs.ROOT)} is not in the site"
