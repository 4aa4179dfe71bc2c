"""A real PostgreSQL server (devtools.postgres: Debian's package, initdb as a non-root user, a free
port on 127.0.0.1, password authentication) for the deployed instances' tests."""

import subprocess
import sys
from pathlib import Path

import pytest

from devtools.postgres import postgres_server

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def postgres():
    with postgres_server() as server:
        yield server


@pytest.fixture
def fresh_db(postgres):
    """A database of its own for one test (the instance creates its tables in it)."""
    return postgres.create_database()


def _build_context(dest: Path) -> Path:
    """The checkout's files, as a clean clone (or a docker build context) has them."""
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, check=True, capture_output=True
    ).stdout.split(b"\0")
    for name in filter(None, files):
        src = ROOT / name.decode()
        if src.is_file():
            target = dest / name.decode()
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(src.read_bytes())
    return dest


@pytest.fixture(scope="session")
def wheel(tmp_path_factory) -> Path:
    """The geo-assets wheel, built as deploy/Dockerfile builds it: `pip wheel --no-deps` over the build context."""
    context = _build_context(tmp_path_factory.mktemp("context"))
    assert (context / "devtools" / "emulators").is_dir() and (context / "tests").is_dir()
    out = tmp_path_factory.mktemp("wheels")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", str(out), str(context)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (built,) = out.glob("geo_assets-*.whl")
    return built
