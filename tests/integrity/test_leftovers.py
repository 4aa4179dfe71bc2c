"""Temporaries of failed writes: a write that fails removes its temporary and whatever its writer put
beside it; a writer killed mid-write leaves one, which listings hide and `geo-assets region remove
--delete-outputs` deletes with the region's other outputs."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from geo_assets.geo.store import Store, local_root

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
REGION = ["leftover-field", "--bbox", "400000", "5120000", "401280", "5121280", "--crs", "EPSG:32631"]

KILLED_WRITER = """
import os, signal, sys
from pathlib import Path
from geo_assets.geo.store import Store
with Store(sys.argv[1]).writing(sys.argv[2]) as tmp:
    Path(tmp).write_bytes(b"half a tile")
    os.kill(os.getpid(), signal.SIGKILL)  # a lost process: no cleanup runs
"""


def files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def test_a_failed_write_removes_its_temporary_and_what_its_writer_put_beside_it(tmp_path):
    store = Store(local_root(tmp_path / "storage"))
    with pytest.raises(OSError, match="disk full"):
        with store.writing("imagery/r/2024-06-01/v/0_0.tif") as tmp:
            Path(tmp).write_bytes(b"partial")
            Path(tmp + ".ovr.tmp").write_bytes(b"overviews")  # as GDAL's COG driver writes them, beside the file
            raise OSError("disk full")
    assert files(tmp_path / "storage") == []


def test_region_remove_deletes_the_temporaries_of_killed_writers(tmp_path):
    root = (tmp_path / "storage").as_uri()
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text((ROOT / "dagster.yaml").read_text())
    env = {**os.environ, "DAGSTER_HOME": str(home), "GEO_ASSETS_STORAGE_ROOT": root}

    def cli(*args):
        proc = subprocess.run(
            [BIN / "geo-assets", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc.stdout

    cli("region", "add", *REGION)
    store = Store(root)
    store.write_bytes("imagery/leftover-field/2024-06-01/v/1_1.tif", b"a finished tile")
    for key in (
        "imagery/leftover-field/2024-06-01/v/0_0.tif",
        "predictions/m/v1/leftover-field/2024-06-01/v/margin-0px/tiles/0_0.tif",
    ):
        writer = subprocess.run([sys.executable, "-c", KILLED_WRITER, root, key], cwd=ROOT, env=env)
        assert writer.returncode == -signal.SIGKILL
    left = [f for f in files(tmp_path / "storage") if f.rsplit("/", 1)[1].startswith(".tmp-")]
    assert len(left) == 2 and store.list("imagery/leftover-field") == ["imagery/leftover-field/2024-06-01/v/1_1.tif"]

    assert "deleted its 3 stored objects" in cli("region", "remove", "leftover-field", "--delete-outputs")
    assert [f for f in files(tmp_path / "storage") if "leftover-field" in f] == []
