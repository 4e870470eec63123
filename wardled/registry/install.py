# -*- test-case-name: tests.test_registry -*-
"""
Build the stores of the wardle.example.com group over one storage backend,
with their watch caches and the admission chain the flags ask for.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

import attrs

from wardled.admission import BAN_FLUNDER, AdmissionChain, BanFlunder, IAdmissionPlugin
from wardled.apis.scheme import ResourceType
from wardled.apis.wardle import GROUP
from wardled.cache.interfaces import CachedObject, ICacher
from wardled.cache.multiplexer import WatchMultiplexer
from wardled.registry import fischer, flunder
from wardled.registry.store import ListOptions, Store
from wardled.storage.interfaces import IStorage

# How long BanFlunder waits for the Fischer cache's first sync before it
# refuses creates (the reference's WaitForReady).
ADMISSION_READY_TIMEOUT = 10.0

# Watch history kept per resource (the reference's watch cache default is
# about as large).
DEFAULT_HISTORY_SIZE = 10_000

# How long a consistent read waits for the cache to reach etcd's current
# revision before reading etcd instead.  The group's own writes reach the
# cache within milliseconds, and writes outside the group's prefix are
# caught up with by asking etcd whether the prefix changed
# (WatchMultiplexer.catch_up); a lag beyond this means the cache's watch is
# slow or the prefix holds keys no cached resource owns.
CONSISTENT_READ_WAIT = 0.25


def group_prefix(key_prefix: str) -> str:
    """
    The key prefix of every object of the group (the reference doubles the
    group: C{/registry/wardle.example.com/wardle.example.com/}).
    """
    return f"{key_prefix.rstrip('/')}/{GROUP}/"


def cache_decoder(resource: ResourceType) -> Callable[[str, bytes, int], CachedObject]:
    """
    Decode a stored value once, for the cache.
    """

    def decode(key: str, value: bytes, revision: int) -> CachedObject:
        obj = resource.from_storage(value, revision)
        metadata = obj["metadata"]
        return CachedObject(
            key=key,
            namespace=metadata.get("namespace", ""),
            name=metadata.get("name", ""),
            labels=metadata.get("labels", {}),
            revision=revision,
            obj=obj,
        )

    return decode


@attrs.frozen
class Registry:
    """
    The stores by plural name, and the multiplexer feeding their caches
    (a service: start it before serving, stop it on shutdown).
    """

    stores: dict[str, Store]
    multiplexer: WatchMultiplexer | None


def build_stores(
    storage: IStorage,
    key_prefix: str,
    now: Callable[[], float],
    disabled_admission: Collection[str] = (),
) -> dict[str, Store]:
    """
    Stores without caches: every read goes to storage.
    """
    return _stores(storage, key_prefix, now, disabled_admission, {})


def build_registry(
    storage: IStorage,
    key_prefix: str,
    clock: Any,
    disabled_admission: Collection[str] = (),
    history_sizes: Mapping[str, int] | None = None,
    first_admission: Sequence[IAdmissionPlugin] = (),
) -> Registry:
    """
    Stores served through one watch multiplexer over the group's prefix.

    v1alpha1 and v1beta1 Flunders share one store and one cache: they share
    one etcd prefix and one storage version.

    @param first_admission: plugins that run before the built-in ones
        (NamespaceLifecycle, as in the reference's plugin order).
    """
    multiplexer = WatchMultiplexer(
        storage, group_prefix(key_prefix), clock, consistent_timeout=CONSISTENT_READ_WAIT
    )
    cachers: dict[str, ICacher] = {}
    for strategy in (flunder.STRATEGY, fischer.STRATEGY):
        resource = strategy.resource
        prefix = f"{group_prefix(key_prefix)}{resource.plural}/"
        history = (history_sizes or {}).get(resource.plural, DEFAULT_HISTORY_SIZE)
        cachers[resource.plural] = multiplexer.register(
            prefix, cache_decoder(resource), history_size=history
        )
    stores = _stores(
        storage, key_prefix, clock.seconds, disabled_admission, cachers, first_admission
    )
    return Registry(stores, multiplexer)


def _stores(
    storage: IStorage,
    key_prefix: str,
    now: Callable[[], float],
    disabled_admission: Collection[str],
    cachers: dict[str, ICacher],
    first_admission: Sequence[IAdmissionPlugin] = (),
) -> dict[str, Store]:
    fischers = Store(
        fischer.STRATEGY, storage, key_prefix, now, cacher=cachers.get("fischers")
    )
    fischer_cache = cachers.get("fischers")

    async def list_fischers() -> Sequence[dict[str, Any]]:
        if fischer_cache is not None:
            await fischer_cache.wait_until_ready(ADMISSION_READY_TIMEOUT)
        return (await fischers.list("", ListOptions())).items

    plugins: list[IAdmissionPlugin] = list(first_admission)
    if BAN_FLUNDER not in disabled_admission:
        plugins.append(BanFlunder(list_fischers))
    flunders = Store(
        flunder.STRATEGY,
        storage,
        key_prefix,
        now,
        admission=AdmissionChain(tuple(plugins)),
        cacher=cachers.get("flunders"),
    )
    return {"flunders": flunders, "fischers": fischers}
