# -*- test-case-name: tests.test_discovery -*-
"""
Discovery documents: C{/apis}, C{/apis/<group>}, C{/apis/<group>/<version>},
and the aggregated C{apidiscovery.k8s.io/v2} document that current kubectl and
client-go ask C{/apis} for (one request instead of one per group-version).

Built from the resource declarations, in the reference's order (versions by
priority, resources by name), with the verbs the server really serves.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Sequence
from typing import Any

from wardled.api.negotiate import parse_accept
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
    paths += ["/livez", "/livez/log", "/livez/ping"]
    paths += ["/readyz", "/readyz/etcd", "/readyz/etcd-readiness", "/readyz/log"]
    paths += ["/readyz/ping", "/readyz/shutdown", "/version"]
    return {"paths": sorted(paths)}


AGGREGATED_MEDIA_TYPE = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"


def wants_aggregated(accept: str | None) -> bool:
    """
    Whether the first clause of C{Accept} this server can answer asks for
    the v2 aggregated document (v2beta1 is no longer served: a client asking
    only for it gets the legacy list, as from the reference).
    """
    for clause in parse_accept(accept):
        params = clause.params
        if clause.q <= 0:
            continue
        if params.get("g") == "apidiscovery.k8s.io" and params.get("as") == "APIGroupDiscoveryList":
            if params.get("v") == "v2" and clause.subtype in ("json", "*"):
                return True
            continue
        if clause.type in ("application", "*") and clause.subtype in ("json", "*"):
            return False
    return False


def _aggregated_resource(resource: ResourceType, version: str) -> Object:
    return {
        "resource": resource.plural,
        "responseKind": {"group": resource.group, "version": version, "kind": resource.kind},
        "scope": "Namespaced" if resource.namespaced else "Cluster",
        "singularResource": resource.singular,
        "verbs": sorted(VERBS),
    }


def aggregated_discovery() -> Object:
    """
    The C{APIGroupDiscoveryList} (apidiscovery.k8s.io/v2) for the group.
    """
    versions = [
        {
            "version": version,
            "resources": [_aggregated_resource(r, version) for r in resources_in(version)],
            "freshness": "Current",
        }
        for version in GROUP_VERSIONS
    ]
    return {
        "kind": "APIGroupDiscoveryList",
        "apiVersion": "apidiscovery.k8s.io/v2",
        "metadata": {},
        "items": [{"metadata": {"name": GROUP, "creationTimestamp": None}, "versions": versions}],
    }


@functools.cache
def aggregated_document() -> tuple[bytes, str]:
    """
    The aggregated document's bytes and its ETag (a quoted hash of them).
    """
    body = json.dumps(aggregated_discovery(), separators=(",", ":")).encode() + b"\n"
    return body, '"' + hashlib.sha512(body).hexdigest().upper() + '"'
