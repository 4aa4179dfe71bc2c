"""RELIABILITY.md, written by the fault suite when asked: one section per scenario, rewritten by its test
each time it passes, with the commit it ran on, the date, what was injected and what was observed.

Only a run with GEO_ASSETS_WRITE_RELIABILITY=1 writes the file (`make reliability`, or
`python -m tests.faults.reliability [pytest args]`, which runs the fault suite so): a plain `make test`
asserts the same things and leaves the checkout clean.

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

WRITE_ENV = "GEO_ASSETS_WRITE_RELIABILITY"

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "RELIABILITY.md"
INTRO = "# Reliability\n\nWritten by the fault suite (tests/faults/). Each scenario rewrites its own section below.\n"


def writing() -> bool:
    """Whether this run writes RELIABILITY.md (GEO_ASSETS_WRITE_RELIABILITY=1); any other value is refused."""
    value = os.environ.get(WRITE_ENV, "")
    if value not in ("", "0", "1"):
        raise ValueError(f"{WRITE_ENV}={value!r}: set 1 to write RELIABILITY.md, or 0 (or nothing) to leave it")
    return value == "1"


def record(name: str, title: str, test: str, measures: list[str], injected: str, observed: dict[str, object]) -> str:
    """Scenario `name`'s section, written to RELIABILITY.md when this run writes it (`writing`); returned
    either way. `observed`: what was counted, in the order to show."""
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    commit = measured_commit(measures)
    rows = "\n".join(f"| {what} | {value} |" for what, value in observed.items())
    section = (
        f"### {title}\n\n"
        f"Commit `{commit}`, {when}, by `{test}` (load {os.getloadavg()[0]:.2f}).\n\n"
        f"Injected: {injected}\n\n| observed | |\n| --- | --- |\n{rows}\n"
    )
    if writing():
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


def main(argv: list[str]) -> int:
    """Run the fault suite (or the pytest arguments given) with RELIABILITY.md written by each scenario."""
    import subprocess
    import sys

    args = argv or ["tests/faults"]
    env = {**os.environ, WRITE_ENV: "1"}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-n", "0", "-p", "no:cacheprovider", *args], cwd=REPO, env=env
    ).returncode


if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv[1:]))
