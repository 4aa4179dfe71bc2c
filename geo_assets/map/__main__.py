"""Serve the map: `python -m geo_assets.map [--host H] [--port P]` (what `geo-assets map-server` runs).

It reads the store of the deployment's profile (GEO_ASSETS_PROFILE, GEO_ASSETS_STORAGE_ROOT and the
storage settings), as the code location does; it never writes. A bad setting, or a store it cannot
read, stops it before it listens, with one line naming the problem (exit 2), not a traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from geo_assets.map.links import DEFAULT_PORT

PROG = "geo-assets map-server"
ROOT_ENV = "GEO_ASSETS_STORAGE_ROOT"


def port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port: a number from 1 to 65535")
    return port


def check_store(store) -> None:
    """Read the store once before serving: a missing folder or bucket, refused credentials or an
    unreachable endpoint then stop the server in one line instead of failing every tile later."""
    from geo_assets.geo.store import LocalStore

    if isinstance(store, LocalStore) and not store.base.is_dir():
        # The default root (in the Dagster home) appears with the first materialisation; a root someone
        # named must exist already.
        if os.environ.get(ROOT_ENV):
            raise FileNotFoundError(f"the store {store.root} ({ROOT_ENV}) is not a folder here")
        return
    # gcsfs logs each exhausted retry with its traceback before raising: the one line below says it all.
    quiet = logging.getLogger("gcsfs")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)
    try:
        store.scan("catalogue", limit=1)  # a listing: the map's credentials may read and list, nothing else
    finally:
        quiet.setLevel(level)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog=PROG, description="serve the map of the store's outputs")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    p.add_argument("--port", type=port, default=DEFAULT_PORT, help=f"port (default: {DEFAULT_PORT})")
    args = p.parse_args(argv)

    import uvicorn

    from geo_assets.map.app import create_app
    from resources.profiles import resource_defs

    try:
        store = resource_defs()["storage"].store()
        check_store(store)
        app = create_app(store)
    except (ValueError, OSError, LookupError) as exc:  # settings, the store (FileNotFound, Permission)
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    # proxy_headers off: the peer is the TCP peer, never what a client's X-Forwarded-For claims (clients.py).
    # An address it cannot listen on (in use, unknown host) uvicorn names in one line, and exits 3.
    uvicorn.run(app, host=args.host, port=args.port, log_level="info", server_header=False, proxy_headers=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
