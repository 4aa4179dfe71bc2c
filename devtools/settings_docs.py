"""The docs' settings tables, written from their declarations in geo_assets/settings.py.

Each block between `<!-- settings: GROUP -->` and `<!-- /settings -->` in a page of the docs is that
group's table (`python -m geo_assets.settings --markdown GROUP`); the prose around it is the page's.

    python -m devtools.settings_docs           rewrite the blocks
    python -m devtools.settings_docs --check   exit 1, naming each page whose blocks differ
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from devtools import docs
from geo_assets.settings import markdown

BLOCK = re.compile(r"(<!-- settings: ([a-z]+) -->\n)(.*?)(<!-- /settings -->)", re.S)


def rendered(text: str) -> str:
    """The page with each settings block made from the declarations."""
    return BLOCK.sub(lambda m: m.group(1) + "\n" + markdown(m.group(2)) + "\n" + m.group(4), text)


def blocks() -> dict[str, list[Path]]:
    """Group -> the pages that hold a block of it."""
    found: dict[str, list[Path]] = {}
    for page in docs.pages():
        for match in BLOCK.finditer(page.read_text()):
            found.setdefault(match.group(2), []).append(page)
    return found


def stale() -> list[Path]:
    """The pages whose settings blocks differ from the declarations."""
    return [p for p in docs.pages() if rendered(p.read_text()) != p.read_text()]


def _shown(page: Path) -> Path:
    return page.relative_to(docs.ROOT) if page.is_relative_to(docs.ROOT) else page


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    pages = stale()
    if "--check" in args:
        for page in pages:
            print(f"{_shown(page)}: settings tables differ from geo_assets/settings.py; "
                  "run python -m devtools.settings_docs", file=sys.stderr)  # fmt: skip
        return 1 if pages else 0
    for page in pages:
        page.write_text(rendered(page.read_text()))
        print(f"wrote the settings tables of {_shown(page)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
