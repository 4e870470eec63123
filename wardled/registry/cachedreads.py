# -*- test-case-name: tests.test_registry_cache -*-
"""
Reads served from the watch cache (k8s.io/apiserver's CacheDelegator): which
requests the cache may answer, and how.

- C{resourceVersion=""} (the default, a consistent read): learn etcd's
  current revision, wait briefly for the cache to reach it, answer from
  memory; if the cache lags (writes outside the group's prefix raised the
  revision and no progress notification came yet) the caller reads storage.
- C{resourceVersion="0"}: whatever the cache holds.
- C{resourceVersion=N} (not older than N): wait up to 3 s for the cache to
  reach N, else 504 C{Too large resource version}.
- C{resourceVersionMatch=Exact} and continued lists read storage at their
  revision (a snapshot the cache no longer has).

The cache holds each object as its response JSON in the storage version
(L{ResourceCodec}), so a read in that version joins bytes instead of
encoding objects; other reads decode them again.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import attrs
from zope.interface import implementer

from wardled import apierrors
from wardled.api.negotiate import encode_json
from wardled.apis.scheme import ResourceType
from wardled.cache.interfaces import (
    CachedObject,
    ICacher,
    IObjectCodec,
    NotReady,
    TooLarge,
)
from wardled.registry import continuetoken

Object = dict[str, Any]

WAIT_FOR_REVISION_SECONDS = 3.0


@implementer(IObjectCodec)
@attrs.frozen
class ResourceCodec:
    """
    A resource's objects as the cache holds them: list items of the
    storage version, in the JSON a response carries.
    """

    resource: ResourceType

    @property
    def version(self) -> str:
        return self.resource.storage_version

    def encode(self, obj: Object) -> bytes:
        return encode_json(self.resource.encode_item(self.version, obj, shared=True))[:-1]

    def decode(self, data: bytes, revision: int) -> Object:
        """
        The bytes were encoded from an object already decoded, defaulted and
        converted from storage (with its resourceVersion set): converting
        them back is enough, without the schema walk C{from_storage} does.
        """
        to_internal = self.resource.versions[self.version].to_internal
        obj: Object = to_internal(json.loads(data), owned=True)
        return obj

    def transcode(self, data: bytes, version: str) -> bytes:
        """
        The bytes of the same object as a list item of C{version}: decoded
        and converted without copying (the decode is this call's own), then
        encoded as a response would encode it.
        """
        versions = self.resource.versions
        internal = versions[self.version].to_internal(json.loads(data), owned=True)
        shown = versions[version].from_internal(internal, owned=True)
        return encode_json(shown)[:-1]


async def cache_revision(cacher: ICacher | None, resource_version: int, any_version: bool) -> int | None:
    """
    The revision the cache may answer at, or None when storage must answer.

    @param resource_version: the requested minimum (0: a consistent read).
    @param any_version: C{resourceVersion="0"}.
    @raise apierrors.StatusError: 504 when the cache does not reach a
        requested N in time.
    """
    if cacher is None or not cacher.ready:
        return None
    if any_version:
        return int(cacher.revision)
    if resource_version:
        try:
            await cacher.wait_for_revision(resource_version, WAIT_FOR_REVISION_SECONDS)
        except TooLarge as error:
            raise apierrors.timeout(str(error), 1) from None
        return int(cacher.revision)
    try:
        return int(await cacher.consistent_revision())
    except (TooLarge, NotReady):
        return None


def page_from_snapshot(
    objects: Sequence[CachedObject],
    revision: int,
    prefix: str,
    limit: int,
    matches: Callable[[CachedObject], bool],
    has_selectors: bool,
) -> tuple[list[CachedObject], str, int | None]:
    """
    The first page of a list from a cache snapshot: the cached objects,
    continue token (read from storage at C{revision} later) and
    C{remainingItemCount}.
    """
    if not has_selectors:
        if not limit or len(objects) <= limit:
            return list(objects), "", None
        last = objects[limit - 1]
        token = continuetoken.encode(revision, last.key + "\x00", prefix)
        return list(objects[:limit]), token, len(objects) - limit
    items: list[CachedObject] = []
    for index, cached in enumerate(objects):
        if not matches(cached):
            continue
        items.append(cached)
        if limit and len(items) >= limit:
            rest = objects[index + 1 :]
            if not any(matches(later) for later in rest):
                return items, "", None
            token = continuetoken.encode(revision, cached.key + "\x00", prefix)
            remaining = None if has_selectors else len(rest)
            return items, token, remaining
    return items, "", None
