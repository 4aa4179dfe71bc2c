"""`geo-assets-webserver` (or `python -m geo_assets.webserver`): Dagster's webserver, as `dagster-webserver`
serves it, with the deployment's service messages around it (middleware.py).

It takes dagster-webserver's flags: -h/--host, -p/--port, -l/--path-prefix, --read-only and the
workspace's (-w, -m, -f, -d, ...), and builds Dagster's own app the way `dagster-webserver` does
(dagster_webserver.cli): the instance of DAGSTER_HOME tuned for a webserver, a workspace process
context, `create_app_from_workspace_process_context`. Nothing of Dagster's is changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import click
from dagster_shared.cli import workspace_options

LOGGER = "dagster-webserver"  # the logger Dagster configures for its webserver
LIVE_DATA_POLL_MS = 2000  # dagster-webserver's default: how often the UI polls for asset data


@contextlib.asynccontextmanager
async def _lifespan(app):
    try:  # Ctrl-C cancels the lifespan: a stop, not an error (as dagster-webserver's own lifespan says)
        yield
    except asyncio.CancelledError:
        logging.getLogger(LOGGER).info("stopped")


@click.command(name="geo-assets-webserver", help=__doc__.split("\n\n")[0])
@click.option("--host", "-h", default="127.0.0.1", show_default=True, help="address to listen on")
@click.option("--port", "-p", type=int, default=3000, show_default=True, help="port to listen on")
@click.option("--path-prefix", "-l", default="", help="the path the UI is served under (eg: /dagster)")
@click.option("--read-only", is_flag=True, help="no mutations: launching runs, toggling schedules and sensors are off")
@click.option(
    "--log-level",
    default="warning",
    show_default=True,
    type=click.Choice(["critical", "error", "warning", "info", "debug"]),
    help="uvicorn's log level",
)
@workspace_options
def webserver(host: str, port: int, path_prefix: str, read_only: bool, log_level: str, **workspace: object) -> None:
    import uvicorn
    from dagster._cli.utils import assert_no_remaining_opts, get_possibly_temporary_instance_for_cli
    from dagster._cli.workspace.cli_target import workspace_opts_to_load_target
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._utils.log import configure_loggers
    from dagster_shared.cli import WorkspaceOpts
    from dagster_webserver.app import create_app_from_workspace_process_context
    from dagster_webserver.cli import DEFAULT_DB_STATEMENT_TIMEOUT, DEFAULT_POOL_MAX_OVERFLOW, DEFAULT_POOL_RECYCLE
    from dagster_webserver.version import __version__

    from geo_assets.webserver.health import Services
    from geo_assets.webserver.middleware import ServiceMessages

    workspace_opts = WorkspaceOpts.extract_from_cli_options(workspace)
    assert_no_remaining_opts(workspace)
    configure_loggers()  # as dagster-webserver: Dagster's own messages (a location that fails to load) are shown
    logger = logging.getLogger(LOGGER)
    with get_possibly_temporary_instance_for_cli(LOGGER, logger=logger) as instance:
        instance.optimize_for_webserver(DEFAULT_DB_STATEMENT_TIMEOUT, DEFAULT_POOL_RECYCLE, DEFAULT_POOL_MAX_OVERFLOW)
        with WorkspaceProcessContext(
            instance,
            version=__version__,
            read_only=read_only,
            workspace_load_target=workspace_opts_to_load_target(workspace_opts),
        ) as context:
            app = create_app_from_workspace_process_context(context, path_prefix, LIVE_DATA_POLL_MS, lifespan=_lifespan)
            logger.info("Serving the Dagster UI with service messages on http://%s:%s%s", host, port, path_prefix)
            uvicorn.run(
                ServiceMessages(app, Services(instance), path_prefix), host=host, port=port, log_level=log_level
            )


def main(argv: list[str] | None = None) -> int:
    webserver.main(args=argv, prog_name="geo-assets-webserver", auto_envvar_prefix="DAGSTER_WEBSERVER")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
