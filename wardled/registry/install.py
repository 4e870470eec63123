# -*- test-case-name: tests.test_registry -*-
"""
Build the stores of the wardle.example.com group over one storage backend,
with the admission chain the flags ask for.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from typing import Any

from wardled.admission import BAN_FLUNDER, AdmissionChain, BanFlunder, IAdmissionPlugin
from wardled.registry import fischer, flunder
from wardled.registry.store import ListOptions, Store
from wardled.storage.interfaces import IStorage


def build_stores(
    storage: IStorage,
    key_prefix: str,
    now: Callable[[], float],
    disabled_admission: Collection[str] = (),
) -> dict[str, Store]:
    """
    One L{Store} per resource, keyed by plural name.

    v1alpha1 and v1beta1 Flunders share one store: they share one etcd prefix
    and one storage version, so there is nothing to keep apart.
    """
    fischers = Store(fischer.STRATEGY, storage, key_prefix, now)

    async def list_fischers() -> Sequence[dict[str, Any]]:
        return (await fischers.list("", ListOptions())).items

    plugins: list[IAdmissionPlugin] = []
    if BAN_FLUNDER not in disabled_admission:
        plugins.append(BanFlunder(list_fischers))
    flunders = Store(
        flunder.STRATEGY, storage, key_prefix, now, admission=AdmissionChain(tuple(plugins))
    )
    return {"flunders": flunders, "fischers": fischers}
