"""The `geo-assets` command (`commands.py`), its GraphQL client (`graphql.py`), the checks of what a
launch asks for (`launches.py`, which the schedule uses too) and the demo (`demo.py`)."""

from geo_assets.cli.commands import main

__all__ = ["main"]
