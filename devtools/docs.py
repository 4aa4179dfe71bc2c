"""The project's documentation as the tests read it: README.md, the pages under docs/ in the order of the
site's navigation (mkdocs.yml), and deploy/README.md."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy" / "README.md"


def _nav(items) -> list[str]:
    out = []
    for item in items:
        value = next(iter(item.values())) if isinstance(item, dict) else item
        out += _nav(value) if isinstance(value, list) else [value]
    return out


def pages() -> list[Path]:
    """README.md, the guide's pages in reading order (any page the navigation misses after them: the site's
    strict build refuses it), and deploy/README.md."""
    nav = [ROOT / p for p in _nav(yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"])]
    guide = [p for p in nav if p.is_relative_to(ROOT / "docs")]
    guide += [p for p in sorted((ROOT / "docs").rglob("*.md")) if p not in guide]
    return [ROOT / "README.md", *guide, DEPLOY]


def user_pages() -> list[Path]:
    """The pages whose examples run on the embedded default (deploy/README.md's run in containers)."""
    return [p for p in pages() if p != DEPLOY]


def text(of: list[Path] | None = None) -> str:
    """The pages (default: every page), one after another."""
    return "\n\n".join(page.read_text() for page in (pages() if of is None else of))


def section(title: str) -> str:
    """The body of the one `## title` section of the docs, up to the next `## ` heading."""
    found = [
        page.read_text().split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]
        for page in pages()
        if f"\n## {title}\n" in page.read_text()
    ]
    if len(found) != 1:
        raise LookupError(f"the docs hold {len(found)} sections titled {title!r}")
    return found[0]
