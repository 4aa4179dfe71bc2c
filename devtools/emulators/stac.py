"""A STAC API on 127.0.0.1: `rustac serve` with its in-memory backend, loaded from item files.

rustac (the `rustac` package's CLI) implements STAC API core, collections and item search
(`intersects`, `bbox`, `datetime`, `collections`, `ids`, paging). Its memory backend advertises
neither the Query nor the Filter extension, so clients must check conformance before sending a
`query` (ours does, and filters cloud cover itself as well).
"""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from devtools.emulators import free_port, running, venv_binary


def rustac_binary() -> str:
    return venv_binary("rustac", "rustac")


@contextmanager
def stac_api(workdir: Path, hrefs: Sequence[Path], timeout: float = 30.0) -> Iterator[str]:
    """Serve the STAC collections/items/item collections in `hrefs`; yield the API's root URL.

    Items whose collection is not among `hrefs` get one created for them (`--create-collections`).
    """
    workdir = Path(workdir)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [rustac_binary(), "serve", "--addr", f"127.0.0.1:{port}", "--create-collections", *map(str, hrefs)]
    log = workdir / f"rustac-{port}.log"
    with running(cmd, log, cwd=workdir) as proc:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"rustac serve exited with code {proc.returncode} while starting; see {log}")
            try:
                with urllib.request.urlopen(url + "/", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"rustac serve at {url} did not answer within {timeout:.0f} s; see {log}")
            time.sleep(0.1)
        yield url
