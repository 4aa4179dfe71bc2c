"""MkDocs hook of `make docs`: the pages are read where people read them on a clone.

README.md and BENCHMARKS.md sit at the repository's root and deploy/README.md beside the deploy files,
and their links are relative to those places. MkDocs reads pages from one docs_dir below mkdocs.yml, so
this hook replaces its pages with the documentation files at their repository paths (src_dir is the
repository): links resolve the same way in the site and on a clone, and no page is copied.
"""

from __future__ import annotations

from pathlib import Path

from mkdocs.structure.files import File, Files

from devtools import docs

ROOT = docs.ROOT


def _sources() -> list[Path]:
    extra = [ROOT / name for name in ("BENCHMARKS.md", "RELIABILITY.md") if (ROOT / name).exists()]
    assets = [p for p in (ROOT / "docs").rglob("*") if p.is_file() and p.suffix != ".md"]
    return [*docs.pages(), *extra, *assets]


def on_files(files: Files, config) -> Files:
    docs_dir = Path(config.docs_dir).resolve()
    theme = [f for f in files if not Path(f.abs_src_path or "").resolve().is_relative_to(docs_dir)]
    pages = [
        File(
            str(p.relative_to(ROOT)),
            src_dir=str(ROOT),
            dest_dir=config.site_dir,
            use_directory_urls=config.use_directory_urls,
        )
        for p in _sources()
    ]
    return Files([*theme, *pages])
