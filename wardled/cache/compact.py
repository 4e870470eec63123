# -*- test-case-name: tests.test_cache_compact -*-
"""
Compact cached objects: one resource's objects held as their response JSON.

A decoded object costs several times its JSON in Python dicts and strings,
and every read re-encodes it.  A L{Packer} turns each object entering the
cache into a compact L{CachedObject}: the bytes its L{IObjectCodec} encodes
(the object as a list item of the storage version, exactly as a response
carries it), the key, the revision, the namespace (interned: shared by
every object of a namespace) and the labels as a flat tuple of interned
strings, for selectors (one tuple per distinct label set).  Reads in the bytes' version join the bytes; the
rest (other versions, Tables, YAML, admission) decode them again, through a
small memo of the most recently decoded objects.
"""

from __future__ import annotations

import sys
from collections import OrderedDict
from collections.abc import Mapping

from .interfaces import CachedObject, IObjectCodec, Object

DEFAULT_MEMO_SIZE = 64
#: How many distinct label sets a packer shares between objects.
LABEL_SETS = 1024


def flat_labels(labels: Mapping[str, str]) -> tuple[str, ...]:
    """
    C{labels} as C{(key, value, key, value...)}, strings interned (label
    keys and values repeat across objects).
    """
    if not labels:
        return ()
    intern = sys.intern
    flat: list[str] = []
    for key, value in labels.items():
        flat.append(intern(key))
        flat.append(intern(value))
    return tuple(flat)


class _LabelSets:
    """
    One tuple per distinct label set, shared by the objects that have it
    (objects of one workload carry the same labels); at most C{size} sets
    are remembered, the table starting over when full.
    """

    def __init__(self, size: int = LABEL_SETS) -> None:
        self._sets: dict[tuple[str, ...], tuple[str, ...]] = {}
        self._size = size

    def shared(self, labels: Mapping[str, str]) -> tuple[str, ...]:
        flat = flat_labels(labels)
        if not flat:
            return flat
        sets = self._sets
        known = sets.get(flat)
        if known is not None:
            return known
        if len(sets) >= self._size:
            sets.clear()
        sets[flat] = flat
        return flat


class Packer:
    """
    Packs one resource's objects with its codec, and decodes them back on
    demand (the last C{memo_size} decodes are kept).
    """

    def __init__(self, codec: IObjectCodec, memo_size: int = DEFAULT_MEMO_SIZE) -> None:
        """
        @param codec: encodes and decodes the resource's objects.
        @param memo_size: how many decoded objects to keep.
        """
        if memo_size < 1:
            raise ValueError(f"memo_size must be at least 1, not {memo_size}")
        self.codec = codec
        self.decodes = 0
        self._memo: OrderedDict[CachedObject, Object] = OrderedDict()
        self._memo_size = memo_size
        self._label_sets = _LabelSets()

    @property
    def version(self) -> str:
        """
        The API version of the packed bytes.
        """
        return self.codec.version

    def pack(self, loose: CachedObject, remember: bool = False) -> CachedObject:
        """
        The compact form of C{loose}.

        @param remember: keep its decoded object in the memo (a changed
            object is likely read again soon; a bulk load's are not).
        """
        obj = loose.obj
        key = loose.key
        name = loose.name
        packed = CachedObject.compact(
            key,
            sys.intern(loose.namespace),
            None if key.endswith("/" + name) else name,
            self._label_sets.shared(loose.labels),
            loose.revision,
            self.codec.encode(obj),
            self,
        )
        if remember:
            self._remember(packed, obj)
        return packed

    def decoded(self, cached: CachedObject) -> Object:
        """
        The internal object of a compact C{cached}, decoded from its bytes
        or taken from the memo.
        """
        memo = self._memo
        obj = memo.get(cached)
        if obj is not None:
            memo.move_to_end(cached)
            return obj
        data = cached.data
        if data is None:
            return cached.obj
        self.decodes += 1
        obj = self.codec.decode(data, cached.revision)
        self._remember(cached, obj)
        return obj

    def transcoded(self, cached: CachedObject, version: str) -> bytes:
        """
        The bytes of a compact C{cached} in another C{version}.
        """
        data = cached.data
        assert data is not None
        return self.codec.transcode(data, version)

    def _remember(self, cached: CachedObject, obj: Object) -> None:
        memo = self._memo
        memo[cached] = obj
        if len(memo) > self._memo_size:
            memo.popitem(last=False)

    def forget(self) -> None:
        """
        Drop every memoised decode.
        """
        self._memo.clear()
