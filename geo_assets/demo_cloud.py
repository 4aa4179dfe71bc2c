"""`geo-assets demo-cloud` from a checkout: the demo itself is dev tooling (devtools/demo_cloud.py).

It starts local stand-ins for S3, GCS and PostgreSQL, which are not part of the installed package
or the images; in an editable install of a checkout, devtools/ lies beside geo_assets/.
"""

from __future__ import annotations

import sys
from pathlib import Path


def run_demo_cloud(workdir: Path, quick: bool = False) -> int:
    checkout = Path(__file__).resolve().parents[1]
    if not (checkout / "devtools" / "demo_cloud.py").is_file():
        raise SystemExit("geo-assets demo-cloud is dev tooling: run it from a git checkout (`make demo-cloud`)")
    if str(checkout) not in sys.path:
        sys.path.insert(0, str(checkout))
    from devtools.demo_cloud import run_demo_cloud as run

    return run(workdir, quick=quick)
