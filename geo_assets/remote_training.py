"""The entrypoint of a remote training job (a Vertex AI custom job, an ECS task):

    python -m geo_assets.remote_training --messages gcs|s3 [--interval SECONDS]

It runs in the code location's own image and speaks to the Dagster step through Dagster Pipes
only (`dagster_pipes`, not dagster): the context (the training request and where the store is)
comes from the Pipes bucket, the store is opened by URI with this job's own credentials, and the
version is trained and stored by the same function as in-process training. Its logs, its
stdout/stderr and the stored version's record go back as Pipes messages; an exception closes
the session with that exception and fails the job.
"""

from __future__ import annotations

import argparse
import os
import sys
from concurrent.futures import ThreadPoolExecutor

from dagster_pipes import (
    PipesGCSContextLoader,
    PipesGCSMessageWriter,
    PipesS3ContextLoader,
    PipesS3MessageWriter,
    open_dagster_pipes,
)

from geo_assets.geo.store import make_store
from geo_assets.ml.versions import TrainingRequest, train_version


def _pipes_io(messages: str, interval: float):
    """The context loader and message writer for the Pipes bucket's API (credentials from the environment)."""
    if messages == "gcs":
        from google.cloud import storage

        client = storage.Client()
        return PipesGCSContextLoader(client), PipesGCSMessageWriter(client, interval=interval)
    import boto3

    # ECS sets AWS_REGION in a task; boto3 itself reads only AWS_DEFAULT_REGION.
    client = boto3.client("s3", region_name=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION"))
    return PipesS3ContextLoader(client), PipesS3MessageWriter(client, interval=interval)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m geo_assets.remote_training", description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", choices=("gcs", "s3"), required=True, help="the API of the Pipes bucket")
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between message uploads (0.5 to 60)")
    args = parser.parse_args(argv)
    if not 0.5 <= args.interval <= 60:  # also refuses nan and inf
        parser.error(f"--interval must be from 0.5 to 60 seconds, got {args.interval}")

    loader, writer = _pipes_io(args.messages, args.interval)
    with open_dagster_pipes(context_loader=loader, message_writer=writer) as pipes:
        request = TrainingRequest.from_json(pipes.get_extra("request"))
        location = dict(pipes.get_extra("storage"))
        store = make_store(location.pop("root"), **location)
        pipes.log.info(f"training {request.model} on {os.cpu_count()} cores, store {store.root}")
        with ThreadPoolExecutor() as pool:  # tile reads release the GIL, as in the step's thread pool
            trained = train_version(store, request, lambda fn, items: list(pool.map(fn, items)), pipes.log.info)
        verb = "reused the stored" if trained.reused else "stored"
        pipes.log.info(f"{verb} version {trained.record['version']} of {request.model}")
        pipes.report_custom_message({"record": trained.record, "reused": trained.reused})
    return 0


if __name__ == "__main__":
    sys.exit(main())
