"""deploy/README.md names only files that exist, and every file in deploy/ is in its table."""

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "deploy/README.md").read_text()


def test_every_file_the_readme_names_exists():
    named = set(
        re.findall(r"`((?:\.\./)?[\w./-]+\.(?:ya?ml|json|txt|py|md)|(?:\.\./)?[\w./-]*Dockerfile[\w.]*)`", README)
    )
    assert named
    missing = []
    for name in named:
        candidates = [
            ROOT / "deploy" / name,
            ROOT / name,
            ROOT / "tests/deploy" / name,
            ROOT / ".github/workflows" / name,
        ]
        by_name = "/" not in name and any((ROOT / "deploy").rglob(name))
        if not by_name and not any(c.exists() for c in candidates):
            missing.append(name)
    assert not missing, missing


def test_every_deploy_file_is_described():
    tracked = subprocess.run(["git", "ls-files", "deploy"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    files = [
        Path(f).relative_to("deploy").as_posix() for f in tracked.split()
    ]  # what a user's wheelhouse holds is theirs
    undocumented = [f for f in files if f != "README.md" and f"`{f}`" not in README]
    assert not undocumented, undocumented
