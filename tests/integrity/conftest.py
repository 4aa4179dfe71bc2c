"""The tiny world for the integrity tests: a store in a temporary folder with the tiny regions, the
holdout region's imagery in 16 tiles of 32 px, and a small model trained once per module."""

from __future__ import annotations

import pytest
from integrity_world import cut_holdout
from tiny_world import instance, registered, store, trained  # noqa: F401 (the tiny world's fixtures)


@pytest.fixture(scope="module")
def holdout_imagery(registered, store) -> dict:  # noqa: F811 (pytest passes the imported fixtures by name)
    """tiny-holdout's imagery in 16 tiles of 32 px; its manifest."""
    return cut_holdout(registered, store, 32)
