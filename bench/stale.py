"""List the BENCHMARKS.md sections whose figures no longer describe the code: rerun those.

    .venv/bin/python -m bench.stale [--check] [--repo PATH]

Each section records the commit it measured and the paths it measures (the line
`<!-- bench: NAME; commit: SHA; measures: PATH ... -->`, written by the benchmark with its figures).
A section is listed when `git diff --name-only SHA..HEAD -- PATH ...` names a file whose code changed,
when it records no commit (none, "unknown", figures of uncommitted code), or when its commit is not in
the repository. A Python module whose syntax tree is unchanged (formatting, comments, docstrings) has
not changed its code; any other file counts by its bytes.
--check exits 1 when any section is listed.
"""

from __future__ import annotations

import argparse
import ast
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

SECTION = re.compile(r"<!-- ([\w-]+):start -->\n(.*?)<!-- \1:end -->", re.S)
META = re.compile(r"<!-- bench: (?P<name>[\w-]+); commit: (?P<commit>[^;]*); measures: (?P<measures>[^;]*?) -->")
SHA = re.compile(r"[0-9a-f]{7,40}")


@dataclass
class Stale:
    section: str
    commit: str
    why: str
    changed: list[str] = field(default_factory=list)


def git(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)


def _code(source: str) -> str | None:
    """A module's syntax tree without docstrings (None when it does not parse)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (
            isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree)


def code_changed(repo: Path, commit: str, path: str) -> bool:
    """Whether `path` holds other code at HEAD than at `commit` (a formatting-only change does not count)."""
    if not path.endswith(".py"):
        return True
    before, after = (git(repo, "show", f"{rev}:{path}") for rev in (commit, "HEAD"))
    if before.returncode != 0 or after.returncode != 0:  # added or removed
        return True
    old = _code(before.stdout)
    return old is None or old != _code(after.stdout)


def stale_sections(doc: str, repo: Path) -> list[Stale]:
    """The sections of `doc` (BENCHMARKS.md's text) that `repo`'s HEAD makes stale, in document order."""
    out = []
    for name, body in SECTION.findall(doc):
        meta = META.search(body)
        if meta is None or meta["name"] != name:
            out.append(Stale(name, "none", "no commit recorded"))
            continue
        commit, measures = meta["commit"].strip(), meta["measures"].split()
        if not SHA.fullmatch(commit):
            out.append(Stale(name, commit, "no commit recorded"))
        elif not measures:
            out.append(Stale(name, commit, "no measured paths recorded"))
        elif git(repo, "rev-parse", "--verify", "--quiet", f"{commit}^{{commit}}").returncode != 0:
            out.append(Stale(name, commit, "commit not in this repository (a shallow clone?)"))
        else:
            diff = git(repo, "diff", "--name-only", f"{commit}..HEAD", "--", *measures)
            if diff.returncode != 0:
                raise RuntimeError(f"git diff for section {name} failed: {diff.stderr.strip()}")
            changed = [path for path in diff.stdout.split() if code_changed(repo, commit, path)]
            if changed:
                out.append(Stale(name, commit, "measured code changed", changed))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.stale", description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--repo",
        type=Path,
        default=Path(__file__).resolve().parent.parent,
        help="the repository (default: this one); its BENCHMARKS.md is read",
    )
    ap.add_argument("--check", action="store_true", help="exit 1 when any section is listed")
    args = ap.parse_args(argv)
    doc = args.repo / "BENCHMARKS.md"
    if not doc.is_file():
        ap.error(f"no BENCHMARKS.md in {args.repo}")
    text = doc.read_text()
    found = stale_sections(text, args.repo)
    total = len(SECTION.findall(text))
    for s in found:
        print(f"{s.section}: {s.why} (commit {s.commit})" + "".join(f"\n    {p}" for p in s.changed))
    print(
        f"{len(found)} of {total} sections to rerun"
        if found
        else f"all {total} sections: no measured code changed since their commits"
    )
    return 1 if found and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
