"""The `geo-assets` command (`commands.py`), its GraphQL client (`graphql.py`), the checks of what a
launch asks for (`launches.py`, which the schedule uses too) and the demo (`demo.py`)."""

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """The console script's entry. The command's module loads only when it runs: the code location and the
    webserver import `launches` and `graphql` from this package, never the command."""
    from geo_assets.cli.commands import main as command

    return command(argv)
