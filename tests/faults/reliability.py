"""RELIABILITY.md, written by the fault suite: one section per scenario, rewritten by its test each time
it passes, with the commit it ran on, the date, what was injected and what was observed.

Like BENCHMARKS.md's sections (bench/common.py): the text between `<!-- name:start -->` and
`<!-- name:end -->` is the scenario's; the line under it names the commit and the code it exercised,
"unknown (...)" where that code had uncommitted changes.
"""

from __future__ import annotations

import datetime
import fcntl
import os
from pathlib import Path

from bench.common import measured_commit

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "RELIABILITY.md"
INTRO = "# Reliability\n\nWritten by the fault suite (tests/faults/). Each scenario rewrites its own section below.\n"


def record(name: str, title: str, test: str, measures: list[str], injected: str, observed: dict[str, object]) -> str:
    """Write scenario `name`'s section; return it. `observed`: what was counted, in the order to show."""
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    commit = measured_commit(measures)
    rows = "\n".join(f"| {what} | {value} |" for what, value in observed.items())
    section = (
        f"### {title}\n\n"
        f"Commit `{commit}`, {when}, by `{test}` (load {os.getloadavg()[0]:.2f}).\n\n"
        f"Injected: {injected}\n\n| observed | |\n| --- | --- |\n{rows}\n"
    )
    _write(name, commit, measures, section)
    return section


def _write(name: str, commit: str, measures: list[str], section: str) -> None:
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    block = f"{start}\n<!-- reliability: {name}; commit: {commit}; measures: {' '.join(measures)} -->\n{section}{end}"
    # Test workers (pytest-xdist) finish scenarios at once: one read-modify-write at a time.
    with open(DOC.with_name(".RELIABILITY.md.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        text = DOC.read_text() if DOC.exists() else INTRO
        if start in text and end in text:
            before, rest = text.split(start, 1)
            text = before + block + rest.split(end, 1)[1]
        else:
            text = text.rstrip("\n") + "\n\n" + block + "\n"
        DOC.write_text(text)
