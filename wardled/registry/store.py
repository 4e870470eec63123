# -*- test-case-name: tests.test_registry -*-
"""
The generic store (k8s.io/apiserver pkg/registry/generic/registry/store.go).

A L{Store} turns API verbs on one resource into storage operations: it builds
keys in the reference's etcd layout, fills system fields, runs the strategy
and admission, and translates storage errors into API errors.  It works on
internal objects; handlers decode and encode around it.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable
from typing import Any, Protocol

import attrs

from wardled import apierrors
from wardled.admission import CREATE, AdmissionChain, Attributes
from wardled.apis.field import ErrorType as FieldErrorType
from wardled.apis.field import FieldError, GoRepr
from wardled.apis.jsoncopy import deep_copy
from wardled.apis.scheme import ResourceType, order_metadata, set_resource_version
from wardled.auth.user import UserInfo
from wardled.cache.interfaces import CachedObject, ICacher
from wardled.registry import continuetoken
from wardled.registry.cachedreads import (
    ResourceCodec,
    cache_revision,
    page_from_snapshot,
)
from wardled.registry.strategy import Strategy, before_create, before_update
from wardled.storage.interfaces import (
    Compacted,
    Conflict,
    FutureRevision,
    IStorage,
    KeyExists,
    KeyNotFound,
    KeyValue,
    Unavailable,
)

Object = dict[str, Any]
# Spelled out here: inside Store, "list" names the method.
Objects = list[Object]

NAME_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
MAX_GENERATED_NAME_LENGTH = 63 - 5
GENERATE_NAME_ATTEMPTS = 8
UPDATE_ATTEMPTS = 5

ORPHAN_FINALIZER = "orphan"
FOREGROUND_FINALIZER = "foregroundDeletion"
ORPHAN = "Orphan"
BACKGROUND = "Background"
FOREGROUND = "Foreground"

EXACT = "Exact"
NOT_OLDER_THAN = "NotOlderThan"

LIST_TOO_OLD = "The resourceVersion for the provided list is too old."
CONTINUE_TOO_OLD = (
    "The provided continue parameter is too old to display a consistent list "
    "result. You can start a new list without the continue parameter, or use the "
    "continue token in this response to retrieve the remainder of the results. "
    "Continuing with the provided token results in an inconsistent list - objects "
    "that were created, modified, or deleted between the time the first chunk was "
    "returned and now may show up in the list."
)


class Matcher(Protocol):
    def matches(self, values: Any) -> bool: ...


@attrs.frozen
class ListOptions:
    """
    A parsed, validated list request.
    """

    label_selector: Matcher | None = None
    field_selector: Matcher | None = None
    limit: int = 0
    continue_token: str = ""
    resource_version: str = ""
    resource_version_match: str = ""

    @property
    def has_selectors(self) -> bool:
        return self.label_selector is not None or self.field_selector is not None


@attrs.define
class ListPage:
    """
    One page of a list: internal objects plus the list metadata.

    A page served from the watch cache holds the cached objects
    (C{cached}); its C{items} are decoded from them on first access, so a
    response that can use their bytes never decodes them.
    """

    _items: list[Object] | None
    resource_version: int
    continue_token: str = ""
    remaining_item_count: int | None = None
    cached: list[CachedObject] | None = None

    @property
    def items(self) -> list[Object]:
        """
        The internal objects (shared with the cache: do not mutate them).
        """
        items = self._items
        if items is None:
            items = self._items = [cached.obj for cached in self.cached or ()]
        return items

    def list_meta(self) -> Object:
        meta: Object = {"resourceVersion": str(self.resource_version)}
        if self.continue_token:
            meta["continue"] = self.continue_token
        if self.remaining_item_count is not None:
            meta["remainingItemCount"] = self.remaining_item_count
        return meta


@attrs.frozen
class DeleteOptions:
    """
    A parsed C{DeleteOptions}.
    """

    precondition_uid: str | None = None
    precondition_resource_version: str | None = None
    propagation_policy: str | None = None
    orphan_dependents: bool | None = None
    dry_run: bool = False


@attrs.frozen
class DeleteResult:
    """
    What a delete did: C{deleted} is False when finalizers keep the object,
    which then carries a C{deletionTimestamp}.
    """

    obj: Object
    deleted: bool


def _random_suffix() -> str:
    return "".join(random.choice(NAME_SUFFIX_ALPHABET) for _ in range(5))


def _now_rfc3339(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def object_fields(obj: Object) -> dict[str, str]:
    """
    The fields a field selector can see: GetAttrs' ObjectMetaFieldsSet.
    """
    metadata = obj.get("metadata", {})
    return {
        "metadata.name": metadata.get("name", ""),
        "metadata.namespace": metadata.get("namespace", ""),
    }


class Store:
    """
    CRUD for one resource over an L{IStorage}.

    @param key_prefix: the C{--etcd-prefix}; keys are
        C{<prefix>/<group>/<resource>/[<namespace>/]<name>}, the group doubled as
        in the reference.
    @param now: seconds since the epoch (the reactor's C{seconds}, so tests
        control time).
    """

    def __init__(
        self,
        strategy: Strategy,
        storage: IStorage,
        key_prefix: str,
        now: Callable[[], float],
        admission: AdmissionChain | None = None,
        new_uid: Callable[[], str] = lambda: str(uuid.uuid4()),
        name_suffix: Callable[[], str] = _random_suffix,
        cacher: ICacher | None = None,
    ) -> None:
        self.strategy = strategy
        self.resource: ResourceType = strategy.resource
        self.storage = storage
        self.root = f"{key_prefix.rstrip('/')}/{self.resource.group}/{self.resource.plural}"
        self.now = now
        self.admission = admission or AdmissionChain()
        self.new_uid = new_uid
        self.name_suffix = name_suffix
        self.cacher = cacher
        if cacher is not None:
            # The cache holds this resource's objects as their JSON.
            cacher.use_codec(ResourceCodec(self.resource))

    # Keys ------------------------------------------------------------------

    def key(self, namespace: str, name: str) -> str:
        if self.resource.namespaced:
            return f"{self.root}/{namespace}/{name}"
        return f"{self.root}/{name}"

    def list_prefix(self, namespace: str) -> str:
        if self.resource.namespaced and namespace:
            return f"{self.root}/{namespace}/"
        return f"{self.root}/"

    def _decode(self, kv: KeyValue) -> Object:
        return self.resource.from_storage(kv.value, kv.mod_revision)

    # Reads -----------------------------------------------------------------

    async def get(self, namespace: str, name: str, resource_version: str = "") -> Object:
        """
        One object; served from the watch cache when it may answer.

        The returned object may be shared with the cache: do not mutate it.
        """
        return (await self.read(namespace, name, resource_version)).obj

    async def read(
        self, namespace: str, name: str, resource_version: str = ""
    ) -> CachedObject:
        """
        One object as L{get} reads it, in the form it was read in: the
        cache's (maybe compact, with its response bytes), or decoded from
        storage.
        """
        minimum = parse_resource_version(resource_version)
        cached_at = await cache_revision(self.cacher, minimum, resource_version == "0")
        key = self.key(namespace, name)
        if cached_at is not None and self.cacher is not None:
            cached = self.cacher.get(key)
            if cached is None:
                raise apierrors.not_found(self.resource.group_resource, name)
            return cached
        kv, revision = await _storage_call(self.storage.get(key))
        _check_not_too_new(minimum, revision)
        if kv is None:
            raise apierrors.not_found(self.resource.group_resource, name)
        obj = self._decode(kv)
        labels = obj.get("metadata", {}).get("labels", {})
        return CachedObject(key, namespace, name, labels, kv.mod_revision, obj)

    async def list(self, namespace: str, options: ListOptions) -> ListPage:
        """
        A page of objects; served from the watch cache when it may answer
        (see L{wardled.registry.cachedreads}), else from storage.
        """
        prefix = self.list_prefix(namespace)
        cached = await self._list_from_cache(prefix, options)
        if cached is not None:
            return cached
        start, revision, minimum = self._list_start(prefix, options)
        items: Objects = []
        last_key = ""
        more = False
        count = 0
        served_revision = revision
        while True:
            want = options.limit - len(items) if options.limit else 0
            result = await _list_call(
                self.storage.list(prefix, start, want, revision), options.continue_token, self, namespace
            )
            served_revision = result.revision
            if not revision:
                revision = result.revision
            if not items:
                count = result.count
            matched_all = True
            for index, kv in enumerate(result.kvs):
                last_key = kv.key
                obj = self._decode(kv)
                if self._matches(obj, options):
                    items.append(obj)
                if options.limit and len(items) >= options.limit:
                    more = index < len(result.kvs) - 1 or result.more
                    matched_all = False
                    break
            if not matched_all or not result.more or not options.limit:
                break
            start = last_key + "\x00"
        _check_not_too_new(minimum, served_revision)
        return self._page(items, revision, prefix, last_key, more, count, options)

    async def _list_from_cache(self, prefix: str, options: ListOptions) -> ListPage | None:
        if options.continue_token or options.resource_version_match == EXACT:
            return None
        minimum = parse_resource_version(options.resource_version)
        cached_at = await cache_revision(
            self.cacher, minimum, options.resource_version == "0"
        )
        if cached_at is None or self.cacher is None:
            return None
        objects, revision = self.cacher.list(prefix)
        items, token, remaining = page_from_snapshot(
            objects,
            revision,
            prefix,
            options.limit,
            lambda cached: self._matches_cached(cached, options),
            options.has_selectors,
        )
        return ListPage(None, revision, token, remaining, cached=items)

    def _matches_cached(self, cached: CachedObject, options: ListOptions) -> bool:
        if options.label_selector is not None and not options.label_selector.matches(
            cached.labels
        ):
            return False
        return options.field_selector is None or options.field_selector.matches(
            {"metadata.name": cached.name, "metadata.namespace": cached.namespace}
        )

    def _list_start(self, prefix: str, options: ListOptions) -> tuple[str | None, int, int]:
        """
        Where a list starts, at which revision (0 = latest), and the minimum
        revision the answer must reach.
        """
        if options.continue_token:
            point = continuetoken.decode(options.continue_token, prefix)
            revision = 0 if point.revision == continuetoken.LATEST else point.revision
            return point.start_key, revision, 0
        exact = options.resource_version_match == EXACT
        requested = parse_resource_version(options.resource_version)
        if exact:
            return None, requested, 0
        return None, 0, requested

    def _page(
        self,
        items: Objects,
        revision: int,
        prefix: str,
        last_key: str,
        more: bool,
        count: int,
        options: ListOptions,
    ) -> ListPage:
        if not (options.limit and more):
            return ListPage(items, revision)
        token = continuetoken.encode(revision, last_key + "\x00", prefix)
        remaining = None
        if not options.has_selectors:
            remaining = max(count - options.limit, 0)
        return ListPage(items, revision, token, remaining)

    def _matches(self, obj: Object, options: ListOptions) -> bool:
        labels = obj.get("metadata", {}).get("labels", {})
        if options.label_selector is not None and not options.label_selector.matches(labels):
            return False
        return options.field_selector is None or options.field_selector.matches(
            object_fields(obj)
        )

    # Create ----------------------------------------------------------------

    async def create(
        self, namespace: str, obj: Object, user: UserInfo, dry_run: bool = False
    ) -> Object:
        obj = deep_copy(obj)
        metadata = obj.setdefault("metadata", {})
        await self.admission.admit(
            Attributes(
                CREATE,
                self.resource.group,
                self.resource.kind,
                self.resource.plural,
                namespace,
                metadata.get("name", ""),
                obj,
                user,
                dry_run,
            )
        )
        self._fill_system_fields(metadata)
        generate = not metadata.get("name") and bool(metadata.get("generateName"))
        if generate:
            metadata["name"] = self._generated_name(metadata["generateName"])
        before_create(self.strategy, namespace, obj)
        if metadata.get("resourceVersion"):
            raise apierrors.internal_error(
                "resourceVersion should not be set on objects to be created"
            )
        if dry_run:
            return obj
        for attempt in range(GENERATE_NAME_ATTEMPTS if generate else 1):
            if attempt:
                metadata["name"] = self._generated_name(metadata["generateName"])
            try:
                return await self._write_new(namespace, obj)
            except KeyExists:
                if not generate:
                    raise await self._already_exists(namespace, metadata["name"]) from None
        raise apierrors.generate_name_conflict(
            self.resource.group_resource, metadata["name"]
        )

    async def _write_new(self, namespace: str, obj: Object) -> Object:
        name = obj["metadata"]["name"]
        data = self.resource.to_storage(obj)
        revision = await _storage_call(self.storage.create(self.key(namespace, name), data))
        set_resource_version(obj, revision)
        return obj

    async def _already_exists(self, namespace: str, name: str) -> apierrors.StatusError:
        error = apierrors.already_exists(self.resource.group_resource, name)
        try:
            kv, _ = await self.storage.get(self.key(namespace, name))
        except Unavailable:
            return error
        if kv is not None and self._decode(kv)["metadata"].get("deletionTimestamp"):
            error.message = f"object is being deleted: {error.message}"
        return error

    def _fill_system_fields(self, metadata: Object) -> None:
        metadata["uid"] = self.new_uid()
        metadata["creationTimestamp"] = _now_rfc3339(self.now())
        metadata.pop("selfLink", None)
        order_metadata(metadata)

    def _generated_name(self, base: str) -> str:
        return base[:MAX_GENERATED_NAME_LENGTH] + self.name_suffix()

    # Update ----------------------------------------------------------------

    async def _read_existing(self, key: str, name: str) -> tuple[KeyValue, Object]:
        """
        The stored key and its object, or 404.
        """
        kv, _ = await _storage_call(self.storage.get(key))
        if kv is None:
            raise apierrors.not_found(self.resource.group_resource, name)
        return kv, self._decode(kv)

    async def update(
        self,
        namespace: str,
        name: str,
        obj: Object,
        user: UserInfo,
        dry_run: bool = False,
        prepare: Callable[[Object, Object], Object] | None = None,
    ) -> Object:
        """
        Replace an object, guarded by its resourceVersion.

        @param prepare: called with the live object and the new one on each
            attempt, before the strategy; returns the object to write (the
            field manager records C{managedFields} here).
        """
        obj = deep_copy(obj)
        key = self.key(namespace, name)
        for _ in range(UPDATE_ATTEMPTS):
            kv, existing = await self._read_existing(key, name)
            self._check_update_version(name, obj, kv)
            candidate = deep_copy(obj)
            if prepare is not None:
                candidate = prepare(existing, candidate)
            before_update(self.strategy, namespace, candidate, existing)
            try:
                return await self._write_update(key, candidate, existing, kv, dry_run)
            except Conflict:
                continue
        raise apierrors.conflict(
            self.resource.group_resource, name, apierrors.OBJECT_MODIFIED
        )

    def _check_update_version(self, name: str, obj: Object, kv: KeyValue) -> None:
        given = obj.get("metadata", {}).get("resourceVersion", "")
        if not given and self.strategy.allow_unconditional_update:
            return
        if not given:
            raise apierrors.invalid(
                apierrors.GroupKind(self.resource.group, self.resource.plural),
                name,
                [
                    FieldError(
                        FieldErrorType.INVALID,
                        "metadata.resourceVersion",
                        GoRepr("0x0"),
                        "must be specified for an update",
                    )
                ],
            )
        parse_resource_version(given)
        if given != str(kv.mod_revision):
            raise apierrors.conflict(
                self.resource.group_resource, name, apierrors.OBJECT_MODIFIED
            )

    async def _write_update(
        self, key: str, obj: Object, existing: Object, kv: KeyValue, dry_run: bool
    ) -> Object:
        """
        Store C{obj} over C{kv}; an object being deleted whose last finalizer
        went away is deleted instead.

        @raise Conflict: the key moved on meanwhile (the caller retries only if
            the client did not pin the resourceVersion).
        """
        metadata = obj["metadata"]
        if metadata.get("deletionTimestamp") and not metadata.get("finalizers"):
            if not dry_run:
                revision = await self._delete_key(key, kv)
                set_resource_version(obj, revision)
            return obj
        data = self.resource.to_storage(obj)
        if data == kv.value:
            return existing
        if dry_run:
            return obj
        revision = await self._update_key(key, data, kv)
        set_resource_version(obj, revision)
        return obj

    async def _update_key(self, key: str, data: bytes, kv: KeyValue) -> int:
        try:
            return await _storage_call(self.storage.update(key, data, kv.mod_revision))
        except KeyNotFound:
            raise Conflict(key, kv) from None

    async def _delete_key(self, key: str, kv: KeyValue) -> int:
        try:
            return await _storage_call(self.storage.delete(key, kv.mod_revision))
        except KeyNotFound:
            raise Conflict(key, kv) from None

    # Delete ----------------------------------------------------------------

    async def delete(
        self, namespace: str, name: str, options: DeleteOptions, user: UserInfo
    ) -> DeleteResult:
        key = self.key(namespace, name)
        for _ in range(UPDATE_ATTEMPTS):
            kv, existing = await self._read_existing(key, name)
            self._check_preconditions(name, existing, options)
            try:
                return await self._delete_existing(key, kv, existing, options)
            except Conflict:
                continue
        raise apierrors.conflict(
            self.resource.group_resource, name, apierrors.OBJECT_MODIFIED
        )

    async def _delete_existing(
        self, key: str, kv: KeyValue, existing: Object, options: DeleteOptions
    ) -> DeleteResult:
        metadata = existing["metadata"]
        if metadata.get("deletionTimestamp"):
            return DeleteResult(existing, deleted=False)
        finalizers = deletion_finalizers(metadata.get("finalizers", []), options)
        if finalizers:
            marked = deep_copy(existing)
            marked_meta = marked["metadata"]
            marked_meta["finalizers"] = finalizers
            marked_meta["deletionTimestamp"] = _now_rfc3339(self.now())
            marked_meta["deletionGracePeriodSeconds"] = 0
            order_metadata(marked_meta)
            if not options.dry_run:
                revision = await self._update_key(key, self.resource.to_storage(marked), kv)
                set_resource_version(marked, revision)
            return DeleteResult(marked, deleted=False)
        if not options.dry_run:
            await self._delete_key(key, kv)
        return DeleteResult(existing, deleted=True)

    def _check_preconditions(self, name: str, existing: Object, options: DeleteOptions) -> None:
        metadata = existing["metadata"]
        kind_resource = apierrors.GroupResource(self.resource.group, self.resource.kind)
        uid = options.precondition_uid
        if uid is not None and uid != metadata.get("uid", ""):
            raise apierrors.conflict(
                kind_resource,
                name,
                f"the UID in the precondition ({uid}) does not match the UID in "
                f"record ({metadata.get('uid', '')}). The object might have been "
                "deleted and then recreated",
            )
        version = options.precondition_resource_version
        if version is not None and version != metadata.get("resourceVersion", ""):
            raise apierrors.conflict(
                kind_resource,
                name,
                f"the ResourceVersion in the precondition ({version}) does not match "
                f"the ResourceVersion in record ({metadata.get('resourceVersion', '')}). "
                "The object has been modified",
            )

    async def delete_collection(
        self,
        namespace: str,
        list_options: ListOptions,
        delete_options: DeleteOptions,
        user: UserInfo,
    ) -> ListPage:
        """
        Delete what a list with C{list_options} returns; the answer is that
        list, taken before the deletes (as the reference's DeleteCollection).
        """
        page = await self.list(namespace, list_options)
        for item in page.items:
            item_meta = item["metadata"]
            try:
                await self.delete(
                    item_meta.get("namespace", ""), item_meta["name"], delete_options, user
                )
            except apierrors.StatusError as error:
                if error.code != 404:
                    raise
        return page


def deletion_finalizers(finalizers: list[str], options: DeleteOptions) -> list[str]:
    """
    The finalizers a delete leaves on the object: the garbage collector's
    C{orphan}/C{foregroundDeletion} added or removed as the delete options
    (or, failing those, the existing finalizers) say.
    """
    orphan = _should_orphan(finalizers, options)
    foreground = _should_foreground(finalizers, options)
    kept = [f for f in finalizers if f not in (ORPHAN_FINALIZER, FOREGROUND_FINALIZER)]
    if orphan:
        kept.append(ORPHAN_FINALIZER)
    if foreground:
        kept.append(FOREGROUND_FINALIZER)
    if set(kept) == set(finalizers):
        return list(finalizers)
    return kept


def _should_orphan(finalizers: list[str], options: DeleteOptions) -> bool:
    if options.orphan_dependents is not None:
        return options.orphan_dependents
    if options.propagation_policy is not None:
        return options.propagation_policy == ORPHAN
    for finalizer in finalizers:
        if finalizer == ORPHAN_FINALIZER:
            return True
        if finalizer == FOREGROUND_FINALIZER:
            return False
    return False


def _should_foreground(finalizers: list[str], options: DeleteOptions) -> bool:
    if options.orphan_dependents is not None:
        return False
    if options.propagation_policy is not None:
        return options.propagation_policy == FOREGROUND
    for finalizer in finalizers:
        if finalizer == FOREGROUND_FINALIZER:
            return True
        if finalizer == ORPHAN_FINALIZER:
            return False
    return False


def parse_resource_version(text: str) -> int:
    """
    A resourceVersion as a revision (0 for empty or C{"0"}).

    @raise apierrors.StatusError: 400 for anything but digits.
    """
    if not text:
        return 0
    if not text.isdigit() or not text.isascii():
        raise apierrors.bad_request(
            f'invalid resource version "{text}": strconv.ParseUint: parsing '
            f'"{text}": invalid syntax'
        )
    return int(text)


def _check_not_too_new(minimum: int, revision: int) -> None:
    if minimum and minimum > revision:
        raise apierrors.timeout(
            f"Too large resource version: {minimum}, current: {revision}", 1
        )


async def _storage_call(deferred: Any) -> Any:
    """
    Await a storage call, turning an unreachable backend into a 503-class
    API error instead of a traceback.
    """
    try:
        return await deferred
    except Unavailable as error:
        raise apierrors.StatusError(
            503, "ServiceUnavailable", f"storage is unavailable: {error}"
        ) from None


async def _list_call(deferred: Any, continue_token: str, store: Store, namespace: str) -> Any:
    try:
        return await _storage_call(deferred)
    except Compacted:
        if not continue_token:
            raise apierrors.gone(LIST_TOO_OLD) from None
        error = apierrors.gone(CONTINUE_TOO_OLD)
        error.list_meta = {"continue": _restart_token(continue_token, store, namespace)}
        raise error from None
    except FutureRevision as error:
        raise apierrors.timeout(
            f"Too large resource version: {error.requested}, current: {error.current}", 1
        ) from None


def _restart_token(token: str, store: Store, namespace: str) -> str:
    prefix = store.list_prefix(namespace)
    point = continuetoken.decode(token, prefix)
    return continuetoken.encode(continuetoken.LATEST, point.start_key, prefix)
