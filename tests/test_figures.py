"""Figures that match the code: BENCHMARKS.md records what each section measured, bench.stale lists the
sections to rerun, and every figure the docs quote (README.md, docs/, deploy/README.md) is one BENCHMARKS.md holds."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
from pathlib import Path

from bench import common
from bench.stale import META, SECTION
from devtools import docs

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "BENCHMARKS.md"

# A quoted figure is a link to the section that holds it: [1.51x](BENCHMARKS.md#floor) (from docs/: ../../BENCHMARKS.md).
QUOTE = re.compile(r"\[([^\]]+)\]\((?:\.\./)*BENCHMARKS\.md#([\w-]+)\)")
# A number, and its sign when it is a ratio or a share: "1.51x" must be held as 1.51x, "98.83 %" as 98.83 %.
FIGURE = re.compile(r"(\d[\d,]*(?:\.\d+)?)\s?(x\b|%)?")
# What an unquoted measurement looks like in prose: an approximation or a ratio.
APPROXIMATE = re.compile(
    r"\babout\s+(?:twice|half|\d)|~\s?\d|\btwice\b|\bhalf as\b|(?<![\w.])\d+(?:\.\d+)?x\b"
    r"|\b\d+(?:\.\d+)?\s?times\b",
    re.I,
)
CITES_BENCHMARK = re.compile(r"\bbench\.\w+|BENCHMARKS\.md|\bbenchmark", re.I)


def sections(doc: str) -> dict[str, str]:
    """Each section's text, without its bench line (a commit id's digits are no figure)."""
    return {name: META.sub("", body) for name, body in SECTION.findall(doc)}


def held_as(number: str, sign: str) -> str:
    """The pattern of a quoted figure in a section's text (a table cell, a sentence)."""
    tail = {"x": r"x\b", "%": r"\s?%"}.get(sign, r"(?!\d)")
    return rf"(?<![\d.]){re.escape(number)}{tail}"


def misquotes(text: str, doc: str) -> tuple[int, list[str]]:
    """(quotes found, those whose section does not hold every number of the quote)."""
    held, found, wrong = sections(doc), 0, []
    for quote, name in QUOTE.findall(text):
        found += 1
        numbers = FIGURE.findall(quote)
        body = held.get(name, "")
        if not numbers or name not in held or not all(re.search(held_as(n, sign), body) for n, sign in numbers):
            wrong.append(f"[{quote}](BENCHMARKS.md#{name})")
    return found, wrong


def unquoted(text: str) -> tuple[int, list[str]]:
    """(paragraphs that cite a benchmark, approximate figures in them that are not quotes)."""
    prose = re.sub(r"```.*?```", "", text, flags=re.S)
    cited, loose = 0, []
    for paragraph in re.split(r"\n\s*\n", prose):
        if CITES_BENCHMARK.search(paragraph):
            cited += 1
            loose += [m.group(0) for m in APPROXIMATE.finditer(QUOTE.sub("", paragraph))]
    return cited, loose


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout.strip()


def commit_all(repo: Path, message: str) -> str:
    git(repo, "add", "-A")
    git(
        repo,
        "-c",
        "user.name=bench",
        "-c",
        "user.email=bench@example.invalid",
        "-c",
        "commit.gpgsign=false",
        "commit",
        "-qm",
        message,
    )
    return git(repo, "rev-parse", "--short=12", "HEAD")


def test_stale_lists_sections_whose_measured_code_changed(tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    (repo / "lib").mkdir(parents=True)
    git(repo, "init", "-q")
    for name in ("a", "b"):
        (repo / "lib" / f"{name}.py").write_text(f"{name} = 1\n")
    measured = commit_all(repo, "code")
    # The benchmarks' own writer, pointed at this repository.
    monkeypatch.setattr(common, "REPO", repo)
    monkeypatch.setattr(common, "DOC", repo / "BENCHMARKS.md")
    monkeypatch.setattr(common, "LOAD_AT_START", 0.0)  # as on a quiet machine: the suite's load is not theirs
    common.write_section("alpha", ["lib/a.py"], "## alpha\n\n1.00 s")
    common.write_section("beta", ["lib/b.py"], "## beta\n\n2.00 s")
    common.write_section("zeta", ["lib"], "## zeta\n\n4.00 s")
    (repo / "lib" / "b.py").write_text("b = 2\n")  # measured before it was committed
    common.write_section("gamma", ["lib/b.py"], "## gamma\n\n3.00 s")
    doc = (repo / "BENCHMARKS.md").read_text()
    assert f"<!-- bench: alpha; commit: {measured}; measures: lib/a.py -->" in doc
    assert f"<!-- bench: gamma; commit: unknown (uncommitted changes to measured code on {measured}); " in doc
    doc += (
        "\n<!-- delta:start -->\n## delta\n\nno bench line\n<!-- delta:end -->\n"
        "\n<!-- eps:start -->\n<!-- bench: eps; commit: 0123456789ab; measures: lib/a.py -->\n## eps\n<!-- eps:end -->\n"
    )
    (repo / "BENCHMARKS.md").write_text(doc)
    (repo / "lib" / "b.py").write_text("b = 1\n")  # back to what beta measured
    commit_all(repo, "figures")
    (repo / "lib" / "a.py").write_text("a = 2\n")
    (repo / "lib" / "c.py").write_text("c = 1\n")  # a new file in the folder zeta measures
    commit_all(repo, "change a, add c")

    def stale(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "bench.stale", "--repo", str(repo), *args], cwd=REPO, capture_output=True, text=True
        )

    out = stale("--check")
    assert out.returncode == 1, out.stderr
    blocks = dict(re.findall(r"^(\w+): (.*(?:\n    .*)*)", out.stdout, re.M))
    assert set(blocks) == {"alpha", "zeta", "gamma", "delta", "eps"}, out.stdout  # beta's code is unchanged
    assert blocks["alpha"] == f"measured code changed (commit {measured})\n    lib/a.py"
    assert blocks["zeta"] == f"measured code changed (commit {measured})\n    lib/a.py\n    lib/c.py"
    assert out.stdout.rstrip().endswith("5 of 6 sections to rerun")
    assert blocks["gamma"].startswith("no commit recorded (commit unknown (uncommitted")
    assert blocks["delta"] == "no commit recorded (commit none)"
    assert blocks["eps"] == "commit not in this repository (a shallow clone?) (commit 0123456789ab)"
    assert stale().returncode == 0  # a listing, not a failure, without --check

    # Once every section is rerun on HEAD, nothing is listed.
    for name, measures in (
        ("alpha", ["lib/a.py"]),
        ("beta", ["lib/b.py"]),
        ("zeta", ["lib"]),
        ("gamma", ["lib/b.py"]),
        ("delta", ["lib/a.py"]),
        ("eps", ["lib/a.py"]),
    ):
        common.write_section(name, measures, f"## {name}\n\nrerun")
    commit_all(repo, "rerun")
    out = stale("--check")
    assert out.returncode == 0, out.stdout
    assert out.stdout.strip() == "all 6 sections: no measured code changed since their commits"


def test_every_section_records_commit_code_and_heading():
    doc = DOC.read_text()
    names = [name for name, _ in SECTION.findall(doc)]
    assert len(names) >= 12, names
    previous_end = 0
    for name, body in SECTION.findall(doc):
        meta = META.search(body)
        assert meta is not None and meta["name"] == name, f"section {name}: no bench line"
        commit = meta["commit"].strip()
        assert re.fullmatch(r"[0-9a-f]{7,40}", commit) or commit.startswith("unknown"), (name, commit)
        # Its heading: inside the markers, or in the text between the previous section and this one.
        end = doc.index(f"<!-- {name}:end -->")
        assert re.search(r"^## ", doc[previous_end:end], re.M), f"section {name} has no heading"
        previous_end = end
        # The benchmark that writes it declares what it measures, its own module first; every path exists.
        module = importlib.import_module(f"bench.{name.replace('-', '_')}")
        assert module.MEASURES[0] == f"bench/{name.replace('-', '_')}.py", name
        missing = [p for p in module.MEASURES if not (REPO / p).exists()]
        assert not missing, f"bench.{module.__name__} measures paths that do not exist: {missing}"
        assert meta["measures"].split(), name


def test_quoted_figures_are_in_benchmarks():
    doc = DOC.read_text()
    for source, text, least in (
        ("the docs", docs.text(), 14),
        ("pyproject.toml", (REPO / "pyproject.toml").read_text(), 1),
    ):
        found, wrong = misquotes(text, doc)
        assert found >= least, f"{source}: only {found} quotes found"
        assert not wrong, f"{source} quote figures BENCHMARKS.md does not hold: {wrong}"
    # A misquote is caught: a figure the section does not hold, or holds only in another section.
    assert misquotes("ONNX Runtime is [2x](BENCHMARKS.md#floor) eager", doc) == (1, ["[2x](BENCHMARKS.md#floor)"])
    assert misquotes("[94 %](BENCHMARKS.md#seams)", doc)[1]
    assert misquotes("[1.51x](BENCHMARKS.md#seams)", doc)[1]
    assert misquotes("[fast](BENCHMARKS.md#floor)", doc)[1]  # a quote without a figure
    assert misquotes("[1.51x](BENCHMARKS.md#nosuch)", doc)[1]


def test_no_unquoted_approximate_figures():
    for page in docs.pages():
        cited, loose = unquoted(page.read_text())
        assert not loose, f"{page.relative_to(REPO)} states figures without quoting BENCHMARKS.md: {loose}"
    cited, _ = unquoted(docs.text())
    assert cited >= 10, f"only {cited} paragraphs of the docs cite a benchmark"
    comments = "\n".join(
        line for line in (REPO / "pyproject.toml").read_text().splitlines() if line.lstrip().startswith("#")
    )
    assert not APPROXIMATE.findall(QUOTE.sub("", comments)), "pyproject.toml states an unquoted figure"
    # The guard sees the wording that drifted before.
    assert unquoted(
        "ONNX Runtime, about twice as fast (the `floor` benchmark); load about 0.7 s (`bench.launch`); "
        "2x eager (BENCHMARKS.md)"
    )[1] == ["about twice", "about 0", "2x"]


def test_a_change_of_formatting_comments_or_docstrings_leaves_a_section_current(tmp_path, monkeypatch):
    """`ruff format` or a comment fixed does not stale the figures; one changed expression does."""
    repo = tmp_path / "repo"
    (repo / "lib").mkdir(parents=True)
    git(repo, "init", "-q")
    (repo / "lib" / "a.py").write_text('def f(x):\n    """Twice x."""\n    return x*2\n')
    (repo / "lib" / "b.py").write_text("def g(x):\n    return x + 1\n")
    commit_all(repo, "code")
    monkeypatch.setattr(common, "REPO", repo)
    monkeypatch.setattr(common, "DOC", repo / "BENCHMARKS.md")
    monkeypatch.setattr(common, "LOAD_AT_START", 0.0)  # as on a quiet machine: the suite's load is not theirs
    common.write_section("alpha", ["lib/a.py"], "## alpha\n\n1.00 s")
    common.write_section("beta", ["lib/b.py"], "## beta\n\n2.00 s")
    commit_all(repo, "figures")
    (repo / "lib" / "a.py").write_text('def f(x):\n    """Two times x: reformatted."""\n    # why\n    return x * 2\n')
    (repo / "lib" / "b.py").write_text("def g(x):\n    return x + 2\n")
    commit_all(repo, "format a, change b")
    out = subprocess.run(
        [sys.executable, "-m", "bench.stale", "--repo", str(repo), "--check"], cwd=REPO, capture_output=True, text=True
    )
    assert out.returncode == 1, out.stderr
    assert re.findall(r"^(\w+): ", out.stdout, re.M) == ["beta"], out.stdout


def test_figures_of_a_busy_machine_are_not_published(tmp_path, monkeypatch, capsys):
    """A benchmark that began at a 1-minute load over QUIET_LOAD prints its section and says why it is not
    in BENCHMARKS.md; sizes (quiet=False) are published whatever the load."""
    doc = tmp_path / "BENCHMARKS.md"
    doc.write_text(common.INTRO)
    monkeypatch.setattr(common, "DOC", doc)
    monkeypatch.setattr(common, "LOAD_AT_START", common.QUIET_LOAD + 0.01)
    common.write_section("busy", ["lib/a.py"], "## busy\n\n1.00 s")
    assert doc.read_text() == common.INTRO
    assert "busy: not written to BENCHMARKS.md: the 1-minute load average was" in capsys.readouterr().err
    common.write_section("sizes", ["lib/a.py"], "## sizes\n\n3 GB", quiet=False)
    assert "## sizes" in doc.read_text()
    monkeypatch.setattr(common, "LOAD_AT_START", common.QUIET_LOAD)
    common.write_section("quiet", ["lib/a.py"], "## quiet\n\n1.00 s")
    assert "## quiet" in doc.read_text()
