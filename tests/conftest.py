"""Shared fixtures: an enrolled in-memory world."""

from __future__ import annotations

import pytest

from tests.support.world import World, make_world


@pytest.fixture
def world() -> World:
    """One broker, one vendor and one buyer, enrolled, with the offer read."""
    return make_world(vendors=1, buyers=1)
