# -*- test-case-name: tests.test_admission -*-
"""
Admission: plugins that see every write after decoding and before storage.

The reference's C{BanFlunder} is here; C{NamespaceLifecycle}, which needs
the cluster's namespaces, is in L{wardled.namespacelifecycle}.  Like the reference it reads
Fischers from a cache (the watch cache), refusing creates with "not yet ready
to handle request" while that cache has not synced; unlike the reference's
informer, the read is consistent (the cache first catches up with etcd's
current revision), so a Fischer bans a name from the moment its create
returned.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import attrs
from zope.interface import Interface, implementer

from wardled import apierrors
from wardled.apis.wardle import FLUNDER, GROUP
from wardled.auth.user import UserInfo
from wardled.cache.interfaces import NotReady

CREATE = "CREATE"
UPDATE = "UPDATE"
DELETE = "DELETE"

BAN_FLUNDER = "BanFlunder"
# Installed only behind kube-apiserver (see wardled.namespacelifecycle).
NAMESPACE_LIFECYCLE = "NamespaceLifecycle"
KNOWN_PLUGINS = frozenset({BAN_FLUNDER, NAMESPACE_LIFECYCLE})

Object = dict[str, Any]


@attrs.frozen
class Attributes:
    """
    What an admission plugin is told about a request.
    """

    operation: str
    group: str
    kind: str
    resource: str
    namespace: str
    name: str
    obj: Object
    user: UserInfo
    dry_run: bool = False


class IAdmissionPlugin(Interface):
    """
    One admission plugin.
    """

    def handles(operation: str) -> bool:
        """
        Whether the plugin wants to see C{operation}.
        """

    def admit(attributes: Attributes) -> Awaitable[None]:
        """
        Allow the request (return) or refuse it (raise a StatusError).
        """


FischerLister = Callable[[], Awaitable[Sequence[Object]]]


@implementer(IAdmissionPlugin)
@attrs.frozen
class BanFlunder:
    """
    Refuse to create a Flunder whose name any Fischer lists in
    C{disallowedFlunders} (exact, case-sensitive, across namespaces).

    @ivar list_fischers: returns every Fischer (internal form).
    """

    list_fischers: FischerLister

    def handles(self, operation: str) -> bool:
        return operation == CREATE

    async def admit(self, attributes: Attributes) -> None:
        if (attributes.group, attributes.kind) != (GROUP, FLUNDER):
            return
        resource = apierrors.GroupResource(attributes.group, attributes.resource)
        try:
            fischers = await self.list_fischers()
        except NotReady:
            raise apierrors.forbidden(
                resource, attributes.name, "not yet ready to handle request"
            ) from None
        for fischer in fischers:
            if attributes.name in fischer.get("disallowedFlunders", ()):
                raise apierrors.forbidden(
                    resource,
                    attributes.name,
                    "this name may not be used, please change the resource name",
                )


@attrs.frozen
class AdmissionChain:
    """
    Plugins run in order; the first refusal wins.
    """

    plugins: tuple[IAdmissionPlugin, ...] = ()

    async def admit(self, attributes: Attributes) -> None:
        for plugin in self.plugins:
            if plugin.handles(attributes.operation):
                await plugin.admit(attributes)
