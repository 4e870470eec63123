# -*- test-case-name: tests.test_discovery -*-
"""
Discovery documents: C{/apis}, C{/apis/<group>}, C{/apis/<group>/<version>}.

Built from the resource declarations, in the reference's order (versions by
priority, resources by name), with the verbs the server really serves.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from wardled.apis.scheme import ResourceType
from wardled.apis.wardle import GROUP, GROUP_VERSIONS, resources_in

Object = dict[str, Any]

# The verbs every resource serves, sorted as discovery lists them.
VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


def _version_entry(version: str) -> Object:
    return {"groupVersion": f"{GROUP}/{version}", "version": version}


def api_group() -> Object:
    return {
        "name": GROUP,
        "versions": [_version_entry(v) for v in GROUP_VERSIONS],
        "preferredVersion": _version_entry(GROUP_VERSIONS[0]),
    }


def api_group_list(server_address: str) -> Object:
    group = api_group()
    group["serverAddressByClientCIDRs"] = [
        {"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}
    ]
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [group]}


def api_group_document() -> Object:
    return {"kind": "APIGroup", "apiVersion": "v1", **api_group()}


def api_resource(resource: ResourceType, verbs: Sequence[str] = VERBS) -> Object:
    return {
        "name": resource.plural,
        "singularName": resource.singular,
        "namespaced": resource.namespaced,
        "kind": resource.kind,
        "verbs": sorted(verbs),
        "storageVersionHash": resource.storage_version_hash(),
    }


def api_resource_list(version: str) -> Object:
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": f"{GROUP}/{version}",
        "resources": [api_resource(r) for r in resources_in(version)],
    }


def root_paths() -> Object:
    """
    The C{/} index of served paths.
    """
    paths = ["/apis", f"/apis/{GROUP}"]
    paths += [f"/apis/{GROUP}/{v}" for v in GROUP_VERSIONS]
    paths += ["/healthz", "/healthz/etcd", "/healthz/log", "/healthz/ping"]
    paths += ["/livez", "/livez/etcd", "/livez/log", "/livez/ping"]
    paths += ["/readyz", "/readyz/etcd", "/readyz/etcd-readiness", "/readyz/log"]
    paths += ["/readyz/ping", "/readyz/shutdown", "/version"]
    return {"paths": sorted(paths)}
