"""Our own paths add no partition that is no valid name (the UI and GraphQL can: the
region_partitions sensor removes those, tests/test_webserver_e2e.py)."""

import pytest

from geo_assets.cli.commands import register


@pytest.mark.parametrize("key", ["../evil", "", "two\nlines"])
def test_register_refuses_a_model_name_that_is_no_slug(instance, key):
    with pytest.raises(ValueError, match="invalid model name"):
        register(instance, regions=["fine-region"], models=["fine-model", key])
    # Refused before anything was added.
    assert instance.get_dynamic_partitions("models") == [] and instance.get_dynamic_partitions("regions") == []
