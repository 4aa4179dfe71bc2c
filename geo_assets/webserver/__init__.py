"""The deployment's Dagster webserver: Dagster's own, with one clear message when a service it needs is away.

    geo-assets-webserver -h 127.0.0.1 -p 3000 -w workspace.yaml [--read-only] [--path-prefix /dagster]
    python -m geo_assets.webserver ...       the same

health.py asks the database and the daemon's heartbeats (cached); middleware.py turns their answers into
a 503 naming the database, or a banner saying the daemon is silent; __main__.py serves it.
"""
