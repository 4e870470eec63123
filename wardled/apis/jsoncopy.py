# -*- test-case-name: tests.test_jsoncopy -*-
"""
Deep copies of JSON values.

Objects are JSON trees (dicts, lists, strings, numbers, booleans, None)
with no shared parts, so a copy only has to rebuild the containers.
C{copy.deepcopy} also keeps a memo of everything it saw and dispatches on
every value's type; on the hot paths (version conversion, every write) that
costs several times this.
"""

from __future__ import annotations

from typing import TypeVar

_V = TypeVar("_V")


def deep_copy(value: _V) -> _V:
    """
    A copy of C{value} sharing no dict or list with it (anything else is
    immutable in a JSON tree and is shared).
    """
    if isinstance(value, dict):
        return {key: deep_copy(item) for key, item in value.items()}  # type: ignore[return-value]
    if isinstance(value, list):
        return [deep_copy(item) for item in value]  # type: ignore[return-value]
    return value
