"""The project's documentation as the tests read it: README.md, the pages under docs/ and deploy/README.md."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md")), ROOT / "deploy" / "README.md"]


def text() -> str:
    """Every page, one after another."""
    return "\n\n".join(page.read_text() for page in pages())


def section(title: str) -> str:
    """The body of the one `## title` section of the docs, up to the next `## ` heading."""
    found = [page.read_text().split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]
             for page in pages() if f"\n## {title}\n" in page.read_text()]
    if len(found) != 1:
        raise LookupError(f"the docs hold {len(found)} sections titled {title!r}")
    return found[0]
