# -*- test-case-name: tests.test_requestinfo -*-
"""
What a request asks for, read from its method, path and query the way
k8s.io/apiserver's RequestInfoFactory reads them.

Authorization and the resource handlers both need the verb, resource,
namespace and name, so the path is parsed once, before either runs.
"""

from __future__ import annotations

import attrs

API_PREFIX = "apis"

_VERB_BY_METHOD = {
    "POST": "create",
    "GET": "get",
    "HEAD": "get",
    "PUT": "update",
    "PATCH": "patch",
    "DELETE": "delete",
}


@attrs.frozen
class RequestInfo:
    """
    The parsed request.

    @ivar verb: the Kubernetes verb for resource requests (get, list, watch,
        create, update, patch, delete, deletecollection), the lower-cased HTTP
        method otherwise.
    @ivar legacy_watch: the path used the deprecated C{/watch/} prefix.
    """

    path: str
    verb: str
    is_resource_request: bool = False
    api_group: str = ""
    api_version: str = ""
    namespace: str = ""
    resource: str = ""
    subresource: str = ""
    name: str = ""
    legacy_watch: bool = False


def parse_request_info(method: str, path: str, watch_param: bool) -> RequestInfo:
    """
    Parse C{method} and C{path} (without query); C{watch_param} is whether
    the query asked C{watch=true}.
    """
    parts = [p for p in path.strip("/").split("/")] if path.strip("/") else []
    non_resource = RequestInfo(path=path, verb=method.lower())
    if len(parts) < 3 or parts[0] != API_PREFIX:
        return non_resource
    group, version, rest = parts[1], parts[2], parts[3:]
    if not rest:
        return non_resource
    verb = _VERB_BY_METHOD.get(method, method.lower())
    legacy_watch = False
    if rest[0] == "watch":
        legacy_watch = True
        verb = "watch"
        rest = rest[1:]
    namespace = ""
    if rest and rest[0] == "namespaces" and len(rest) > 2:
        namespace = rest[1]
        rest = rest[2:]
    resource = rest[0] if rest else ""
    name = rest[1] if len(rest) > 1 else ""
    subresource = rest[2] if len(rest) > 2 else ""
    if not name and verb == "get":
        verb = "list"
    if verb == "delete" and not name:
        verb = "deletecollection"
    if watch_param and verb in ("get", "list"):
        verb = "watch"
    return RequestInfo(
        path=path,
        verb=verb,
        is_resource_request=True,
        api_group=group,
        api_version=version,
        namespace=namespace,
        resource=resource,
        subresource=subresource,
        name=name,
        legacy_watch=legacy_watch,
    )
