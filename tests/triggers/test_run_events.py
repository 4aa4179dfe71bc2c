"""How `geo-assets launch --wait` words a followed run's events (the real path, a failed step on S3, is
tests/faults/test_secrets.py): a step's failure shows the step's own error, not Dagster's wrapper of it."""

from geo_assets.cli.graphql import _describe

WRAPPER = (
    'dagster._core.errors.DagsterExecutionStepExecutionError: Error occurred while executing op "imagery_tiles":\n'
)


def test_a_failed_step_shows_its_own_error_not_dagsters_wrapper():
    event = {
        "__typename": "ExecutionStepFailureEvent",
        "message": 'Execution of step "imagery_tiles" failed.',
        "error": {
            "message": WRAPPER,
            "className": "DagsterExecutionStepExecutionError",
            "causes": [{"message": "OSError: S3 store: writing s3://b/x.tif failed after 5 attempts\n"}],
        },
    }
    assert _describe(event) == (
        'Execution of step "imagery_tiles" failed.: OSError: S3 store: writing s3://b/x.tif failed after 5 attempts'
    )


def test_other_errors_keep_their_message_and_causes():
    event = {
        "__typename": "RunFailureEvent",
        "message": "Execution of run failed.",
        "error": {"message": "ValueError: bad\n", "className": "ValueError", "causes": [{"message": "KeyError: x"}]},
    }
    assert _describe(event) == "Execution of run failed.: ValueError: bad <- KeyError: x"
    assert _describe({"__typename": "MessageEvent", "message": "Started."}) == "Started."
