"""RELIABILITY.md is written only when asked (GEO_ASSETS_WRITE_RELIABILITY=1, as `make reliability` sets
it): a plain run of the suite computes and checks every scenario's section and leaves the file as it was."""

import pytest
import reliability

SECTION = dict(
    name="flag-check",
    title="A scenario",
    test="tests/faults/test_reliability_doc.py",
    measures=["tests/faults/reliability.py"],
    injected="nothing.",
    observed={"run": "succeeded"},
)


@pytest.fixture
def doc(tmp_path, monkeypatch):
    path = tmp_path / "RELIABILITY.md"
    path.write_text(reliability.INTRO)
    monkeypatch.setattr(reliability, "DOC", path)
    return path


def test_a_plain_run_leaves_the_file_as_it_was(doc, monkeypatch):
    monkeypatch.delenv(reliability.WRITE_ENV, raising=False)
    section = reliability.record(**SECTION)
    assert "### A scenario" in section and "| run | succeeded |" in section
    assert doc.read_text() == reliability.INTRO
    monkeypatch.setenv(reliability.WRITE_ENV, "0")
    reliability.record(**SECTION)
    assert doc.read_text() == reliability.INTRO


def test_a_run_that_asks_writes_the_scenarios_section(doc, monkeypatch):
    monkeypatch.setenv(reliability.WRITE_ENV, "1")
    section = reliability.record(**SECTION)
    text = doc.read_text()
    assert text.startswith(reliability.INTRO) and section in text
    assert "<!-- flag-check:start -->" in text and "<!-- reliability: flag-check; commit: " in text
    reliability.record(**SECTION)  # rewritten in place, not appended
    assert doc.read_text().count("<!-- flag-check:start -->") == 1


def test_an_unclear_value_is_refused(doc, monkeypatch):
    monkeypatch.setenv(reliability.WRITE_ENV, "yes")
    with pytest.raises(ValueError, match="GEO_ASSETS_WRITE_RELIABILITY='yes': set 1 to write RELIABILITY.md"):
        reliability.record(**SECTION)
    assert doc.read_text() == reliability.INTRO
