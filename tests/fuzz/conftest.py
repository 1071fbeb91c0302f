"""Shared pieces of the fuzz tests: a hypothesis-driven ``Source`` and a shared rig."""

from __future__ import annotations

from functools import cache

from hypothesis import strategies as st

from fuzz.surfaces import Rig


class DrawSource:
    """The generators' choices drawn by hypothesis, so a failure shrinks to its plainest."""

    def __init__(self, data: st.DataObject) -> None:
        self._data = data

    def below(self, n: int) -> int:
        return self._data.draw(st.integers(0, n - 1)) if n > 1 else 0

    def blob(self, max_size: int) -> bytes:
        return self._data.draw(st.binary(max_size=max_size))


@cache
def shared_rig() -> Rig:
    """For surfaces whose inputs are all refused: one rig serves every example."""
    return Rig()
