"""Serve the map: `python -m geo_assets.map [--host H] [--port P]` (what `geo-assets map-server` runs).

It reads the store of the deployment's profile (GEO_ASSETS_PROFILE, GEO_ASSETS_STORAGE_ROOT and the
storage settings), as the code location does; it never writes.
"""

from __future__ import annotations

import argparse

from geo_assets.map.links import DEFAULT_PORT


def main(argv: list[str] | None = None) -> int:
    import uvicorn

    from geo_assets.map.app import create_app
    from resources.profiles import resource_defs

    p = argparse.ArgumentParser(prog="geo-assets map-server", description="serve the map of the store's outputs")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default: {DEFAULT_PORT})")
    args = p.parse_args(argv)
    store = resource_defs()["storage"].store()
    # proxy_headers off: the peer is the TCP peer, never what a client's X-Forwarded-For claims (clients.py).
    uvicorn.run(
        create_app(store), host=args.host, port=args.port, log_level="info", server_header=False, proxy_headers=False
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
