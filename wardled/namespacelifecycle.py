# -*- test-case-name: tests.test_reviews -*-
"""
The NamespaceLifecycle admission plugin: no new objects in a namespace the
cluster does not have, or is deleting.

Behind kube-apiserver, namespaces are the cluster's; a Flunder created in a
namespace that does not exist would be orphaned, and one created in a
terminating namespace would escape its deletion.  As in Kubernetes, the
namespaces are mirrored by a watch (L{wardled.kube.reflector.Reflector}),
not fetched per request; a name the mirror does not know yet is looked up
once live before the create is refused (it may be brand new).  Creates wait
up to 10 s for the mirror's first list, then fail with "not yet ready to
handle request".  Stand-alone (no cluster), namespaces are free names and
this plugin is not installed.
"""

from __future__ import annotations

from typing import Any

import attrs
from twisted.internet.defer import TimeoutError as DeferredTimeout
from zope.interface import implementer

from wardled import apierrors
from wardled.admission import CREATE, Attributes, IAdmissionPlugin
from wardled.kube.client import KubeAPIError, KubeClient, KubeUnavailable
from wardled.kube.reflector import Reflector

NAMESPACES_PATH = "/api/v1/namespaces"
TERMINATING = "Terminating"
READY_TIMEOUT = 10.0

NAMESPACES = apierrors.GroupResource("", "namespaces")


@implementer(IAdmissionPlugin)
@attrs.frozen
class NamespaceLifecycle:
    """
    The C{NamespaceLifecycle} plugin (L{NAMESPACE_LIFECYCLE}).

    Refuse creates in missing (404) or terminating (403) namespaces.

    @ivar namespaces: the mirror of the cluster's namespaces.
    @ivar client: for the live lookup of a name the mirror does not know.
    @ivar clock: for the wait on the mirror's first list.
    """

    namespaces: Reflector
    client: KubeClient
    clock: Any

    def handles(self, operation: str) -> bool:
        return operation == CREATE

    async def admit(self, attributes: Attributes) -> None:
        if not attributes.namespace:
            return
        resource = apierrors.GroupResource(attributes.group, attributes.resource)
        await self._wait_ready(resource, attributes.name)
        namespace = self.namespaces.objects.get(attributes.namespace)
        if namespace is None:
            namespace = await self._live(attributes.namespace)
        if (namespace.get("status") or {}).get("phase") == TERMINATING:
            raise _terminating(resource, attributes.name, attributes.namespace)

    async def _wait_ready(self, resource: apierrors.GroupResource, name: str) -> None:
        if self.namespaces.synced:
            return
        try:
            await self.namespaces.wait_synced().addTimeout(READY_TIMEOUT, self.clock)
        except DeferredTimeout:
            raise apierrors.forbidden(
                resource, name, "not yet ready to handle request"
            ) from None

    async def _live(self, name: str) -> dict[str, Any]:
        try:
            return await self.client.get(f"{NAMESPACES_PATH}/{name}")
        except KubeAPIError as error:
            if error.code == 404:
                raise apierrors.not_found(NAMESPACES, name) from None
            raise apierrors.internal_error(str(error)) from None
        except KubeUnavailable as error:
            raise apierrors.internal_error(str(error)) from None


def _terminating(
    resource: apierrors.GroupResource, name: str, namespace: str
) -> apierrors.StatusError:
    error = apierrors.forbidden(
        resource,
        name,
        f"unable to create new content in namespace {namespace} "
        "because it is being terminated",
    )
    details = dict(error.details or {})
    details["causes"] = [
        {
            "reason": "NamespaceTerminating",
            "message": f"namespace {namespace} is being terminated",
            "field": "metadata.namespace",
        }
    ]
    error.details = details
    return error
