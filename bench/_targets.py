"""
What a watcher and the writer send to each side of the comparison.

wardled side: watchers C{GET .../namespaces/NS/flunders?watch=true} from
the collection's current resourceVersion (list, then watch: what informers
do) over TLS with a client certificate; the writer POSTs Flunders to the
same namespace and reads the revision from the 201's
C{metadata.resourceVersion}.

etcd side: watchers C{POST /v3/watch} on a key prefix through etcd's JSON
gateway (newline-delimited C{{"result": ...}} messages); the writer PUTs,
under that prefix, the very bytes wardled stored for a Flunder and reads
the revision from the reply's C{header.revision}.  The prefix is outside
wardled's, so wardled's own etcd watch never sees these writes.
"""

from __future__ import annotations

import base64
import json
import urllib.request
from typing import Any

from bench._http import Endpoint, request_bytes
from bench._watchers import WatchTarget
from bench._writer import WriteTarget

GROUP_VERSION = "wardle.example.com/v1alpha1"
_RESOURCE_VERSION = rb'"resourceVersion":"(\d+)"'
_MOD_REVISION = rb'"mod_revision":"(\d+)"'
_HEADER_REVISION = rb'"revision":"(\d+)"'
_CREATED = b'"created":true'
_SETUP_TIMEOUT = 30.0


def flunders_path(namespace: str) -> str:
    """
    The Flunder collection of C{namespace}.
    """
    return f"/apis/{GROUP_VERSION}/namespaces/{namespace}/flunders"


def flunder(index: int) -> bytes:
    """
    The body of the C{index}-th Flunder the writer creates.
    """
    body = {
        "apiVersion": GROUP_VERSION,
        "kind": "Flunder",
        "metadata": {
            "name": f"bench-{index:06d}",
            "labels": {
                "app.kubernetes.io/name": "watch-fanout",
                "shard": str(index % 8),
            },
        },
        "spec": {"reference": f"fischer-{index % 16}", "referenceType": "Fischer"},
    }
    return json.dumps(body, separators=(",", ":")).encode()


def wardled_watch(
    endpoint: Endpoint, namespace: str, resource_version: str
) -> WatchTarget:
    """
    A Kubernetes watch of C{namespace}'s Flunders from C{resource_version}.
    """
    path = f"{flunders_path(namespace)}?watch=true&resourceVersion={resource_version}"
    return WatchTarget(
        name="wardled",
        endpoint=endpoint,
        request=request_bytes("GET", path, endpoint.host),
        revision_pattern=_RESOURCE_VERSION,
    )


def wardled_writer(endpoint: Endpoint, namespace: str) -> WriteTarget:
    """
    Create Flunders in C{namespace}.
    """
    path = flunders_path(namespace)
    return WriteTarget(
        endpoint=endpoint,
        make_request=lambda index: ("POST", path, flunder(index)),
        revision_pattern=_RESOURCE_VERSION,
        success=201,
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def prefix_end(prefix: bytes) -> bytes:
    """
    The first key after every key starting with C{prefix} (etcd's range end).
    """
    return prefix[:-1] + bytes([prefix[-1] + 1])


def etcd_watch(
    endpoint: Endpoint,
    prefix: bytes,
    start_revision: int | None = None,
    *,
    options: dict[str, bool] | None = None,
    revision_pattern: bytes = _MOD_REVISION,
) -> WatchTarget:
    """
    An etcd gateway watch of every key under C{prefix} from
    C{start_revision} (default: from now on).

    @param options: more fields of the C{create_request} (C{prev_kv},
        C{progress_notify}).
    @param revision_pattern: finds each event's revision in a line.
    """
    create: dict[str, object] = {
        "key": _b64(prefix),
        "range_end": _b64(prefix_end(prefix)),
        **(options or {}),
    }
    if start_revision is not None:
        create["start_revision"] = str(start_revision)
    body = json.dumps({"create_request": create}).encode()
    return WatchTarget(
        name="etcd",
        endpoint=endpoint,
        request=request_bytes("POST", "/v3/watch", endpoint.host, body),
        revision_pattern=revision_pattern,
        ready_marker=_CREATED,
    )


def etcd_writer(endpoint: Endpoint, prefix: bytes, value: bytes) -> WriteTarget:
    """
    Put C{value} under a new key below C{prefix} for each write.
    """
    encoded_value = _b64(value)

    def make_request(index: int) -> tuple[str, str, bytes]:
        key = _b64(prefix + f"bench-{index:06d}".encode())
        body = json.dumps({"key": key, "value": encoded_value}).encode()
        return "POST", "/v3/kv/put", body

    return WriteTarget(
        endpoint=endpoint,
        make_request=make_request,
        revision_pattern=_HEADER_REVISION,
        success=200,
    )


def etcd_call(url: str, path: str, body: dict[str, Any]) -> Any:
    """
    One blocking JSON call to etcd's gateway (set-up only, never timed).
    """
    request = urllib.request.Request(
        url + path,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=_SETUP_TIMEOUT) as response:
        return json.loads(response.read())


def etcd_revision(url: str) -> int:
    """
    etcd's current revision.
    """
    reply = etcd_call(url, "/v3/kv/range", {"key": _b64(b"\0"), "count_only": True})
    return int(reply["header"]["revision"])


def etcd_first_value(url: str, prefix: bytes) -> bytes:
    """
    The value of the first key under C{prefix}.

    @raise LookupError: there is none.
    """
    reply = etcd_call(
        url,
        "/v3/kv/range",
        {"key": _b64(prefix), "range_end": _b64(prefix_end(prefix)), "limit": "1"},
    )
    kvs = reply.get("kvs") or []
    if not kvs:
        raise LookupError(f"no key under {prefix!r}")
    return base64.b64decode(kvs[0]["value"])
