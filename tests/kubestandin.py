# -*- test-case-name: tests.test_kubestandin -*-
"""
A stand-in for kube-apiserver, for wardled's integration tests.

This is not kube-apiserver.  kube-apiserver cannot be installed where
wardled's tests run, yet wardled, as an aggregated API server, calls the core
apiserver for a handful of things: C{TokenReview} (bearer tokens),
C{SubjectAccessReview} (authorization), the ConfigMap
C{kube-system/extension-apiserver-authentication} (client CAs) and
namespaces (get, list, watch; the NamespaceLifecycle admission plugin).
This module answers exactly those requests on the same paths, with the same
JSON shapes, status codes and C{Status} bodies as kube-apiserver, records
every request, and lets the test decide what the "cluster" holds and says.

Two halves live here:
  - the server, run as C{python -m tests.kubestandin --port P --directory D}
    (Twisted, HTTPS on 127.0.0.1 through L{wardled.tls.server_tls_options});
    it reads C{ca.crt}, C{server.crt} and C{server.key} from C{D};
  - L{KubeStandIn}, the blocking test-side class that makes the certificates
    and a kubeconfig, starts the server and drives it through control
    endpoints under C{/standin/} on the same port (JSON in and out; they are
    not recorded as calls).

Where the stand-in knowingly differs from kube-apiserver:
  - it authorizes nothing: any caller with a client certificate from its CA
    (or a bearer token it knows) may call everything; others get 401;
  - SubjectAccessReviews are decided by the test's rules (L{rule_matches}),
    not RBAC; C{denied} is never set;
  - unknown TokenReview tokens give C{"error": "invalid bearer token"}, the
    text kube-apiserver gives for an opaque token no authenticator knows;
  - a watch from a resource version newer than the current one gets 504 at
    once (kube-apiserver waits about 3 s first); C{BOOKMARK} events are sent
    only when the test asks (L{KubeStandIn.send_bookmark});
  - only HTTP/1.1 is offered (responses to watches are chunked).
"""

from __future__ import annotations

import argparse
import copy
import datetime
import http.client
import json
import os
import signal
import ssl
import subprocess
import sys
import urllib.parse
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

import attrs
from twisted.internet.interfaces import IDelayedCall, IReactorTCP, IReactorTime
from twisted.logger import globalLogBeginner, textFileLogObserver
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

from tests.processes import free_port, read_log, spawn_module, stop_process
from tests.waiting import wait_serving
from wardled import apierrors, certs
from wardled.apierrors import GroupKind, GroupResource, StatusError
from wardled.apis import field
from wardled.tls import client_certificate_identity, server_tls_options

Object = dict[str, Any]

CONTROL_PREFIX = "standin"
CLIENT_USER = "wardled"
API_AUDIENCES = ["https://kubernetes.default.svc.cluster.local"]
AUTHENTICATED_GROUP = "system:authenticated"
ANONYMOUS_USER = "system:anonymous"
INVALID_TOKEN = "invalid bearer token"
UNAVAILABLE_MESSAGE = "the stand-in kube-apiserver is unavailable"
FIRST_RESOURCE_VERSION = 100
HISTORY_LIMIT = 1000
INITIAL_NAMESPACES = ("default", "kube-system", "kube-public")
PHASES = ("Active", "Terminating")
AUTH_CONFIGMAP = "extension-apiserver-authentication"
AUTH_CONFIGMAP_NAMESPACE = "kube-system"
NAMESPACES = GroupResource("", "namespaces")
CONFIGMAPS = GroupResource("", "configmaps")
NAME_LABEL = "kubernetes.io/metadata.name"

CA_CERT_NAME = "ca.crt"
CA_KEY_NAME = "ca.key"
SERVER_CERT_NAME = "server.crt"
SERVER_KEY_NAME = "server.key"
CLIENT_CERT_NAME = "wardled.crt"
CLIENT_KEY_NAME = "wardled.key"
KUBECONFIG_NAME = "kubeconfig"
LOG_NAME = "kubestandin.log"

START_TIMEOUT = 20.0
CONTROL_TIMEOUT = 10.0

# Keys a SubjectAccessReview allow rule may have; the resource keys make a
# rule apply to resource requests only, nonResourceURLs to the others.
RULE_KEYS = frozenset(
    {
        "user",
        "group",
        "verbs",
        "groups",
        "resources",
        "namespaces",
        "names",
        "nonResourceURLs",
    }
)
_RESOURCE_RULE_KEYS = frozenset({"groups", "resources", "namespaces", "names"})
TOKEN_KEYS = frozenset({"username", "uid", "groups", "extra", "audiences"})

# Field labels kube-apiserver converts for v1 Namespaces and ConfigMaps.
_FIELD_LABELS = {
    "namespaces": ("metadata.name", "status.phase"),
    "configmaps": ("metadata.name", "metadata.namespace"),
}


def _timestamp() -> str:
    """
    Now, as Kubernetes writes a C{metav1.Time} (RFC 3339, seconds, UTC).
    """
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _encode(body: Any) -> bytes:
    """
    JSON the way Go's encoder writes it: compact, one line.
    """
    return json.dumps(body, separators=(",", ":")).encode("utf-8")


def _without_type(item: Object) -> Object:
    """
    An object as a list item: kube-apiserver leaves out C{kind} and
    C{apiVersion} of the items of a built-in list.
    """
    return {k: v for k, v in item.items() if k not in ("kind", "apiVersion")}


def _path_field(item: Object, path: str) -> str:
    value: Any = item
    for part in path.split("."):
        value = value.get(part, {}) if isinstance(value, dict) else {}
    return value if isinstance(value, str) else ""


# --- selectors ---------------------------------------------------------------

Predicate = Callable[[Object], bool]


@attrs.frozen
class Requirement:
    """
    One term of a field or label selector: C{key op value}, where C{op} is
    C{=}, C{!=}, C{exists} or C{!exists} (the last two for labels only).
    """

    key: str
    operator: str
    value: str = ""

    def holds(self, actual: str | None) -> bool:
        if self.operator == "exists":
            return actual is not None
        if self.operator == "!exists":
            return actual is None
        equal = (actual or "") == self.value
        return equal if self.operator == "=" else not equal


def _split_term(term: str) -> Requirement:
    for operator, name in (("!=", "!="), ("==", "="), ("=", "=")):
        if operator in term:
            key, value = term.split(operator, 1)
            return Requirement(key.strip(), name, value.strip())
    if term.startswith("!"):
        return Requirement(term[1:].strip(), "!exists")
    return Requirement(term.strip(), "exists")


def parse_selector(text: str) -> list[Requirement]:
    """
    Parse a comma-separated selector of equality terms (set-based terms such
    as C{in (a,b)} are not supported by the stand-in).
    """
    return [_split_term(term) for term in text.split(",") if term.strip()]


def field_predicate(resource: str, text: str) -> Predicate:
    """
    A predicate for a C{fieldSelector} on C{resource}.

    @raise StatusError: 400 for a field label kube-apiserver does not convert
        (C{field label not supported: X}) or a term without a value.
    """
    requirements = parse_selector(text)
    for requirement in requirements:
        if requirement.key not in _FIELD_LABELS[resource]:
            raise apierrors.bad_request(f"field label not supported: {requirement.key}")
        if requirement.operator not in ("=", "!="):
            raise apierrors.bad_request(
                f"invalid selector: '{text}'; can't understand '{requirement.key}'"
            )
    return lambda item: all(r.holds(_path_field(item, r.key)) for r in requirements)


def label_predicate(text: str) -> Predicate:
    """
    A predicate for a C{labelSelector} of equality and existence terms.
    """
    requirements = parse_selector(text)

    def matches(item: Object) -> bool:
        labels = item.get("metadata", {}).get("labels") or {}
        return all(r.holds(labels.get(r.key)) for r in requirements)

    return matches


# --- authentication and authorization ----------------------------------------


def _user_info(entry: Mapping[str, Any]) -> Object:
    """
    The C{status.user} of a TokenReview for a known token: fields Go leaves
    out when empty are left out, and C{system:authenticated} is added to the
    groups, as kube-apiserver's authenticated-group adder does.
    """
    username = str(entry.get("username", ""))
    groups = [str(g) for g in entry.get("groups") or []]
    if username != ANONYMOUS_USER and AUTHENTICATED_GROUP not in groups:
        groups.append(AUTHENTICATED_GROUP)
    user: Object = {"username": username}
    if entry.get("uid"):
        user["uid"] = str(entry["uid"])
    user["groups"] = groups
    extra = {
        str(k): [str(v) for v in values]
        for k, values in (entry.get("extra") or {}).items()
    }
    if extra:
        user["extra"] = extra
    return user


def token_review_status(
    tokens: Mapping[str, Mapping[str, Any]], token: str, audiences: Sequence[str]
) -> Object:
    """
    The C{status} kube-apiserver gives a TokenReview of C{token}.

    Without requested audiences the apiserver's own (L{API_AUDIENCES}) are
    used.  A token entry with C{audiences} is valid only for those; others
    are valid for any.

    @param tokens: token to user info (C{username}, C{uid}, C{groups},
        C{extra}, optional C{audiences}).
    @param token: the token under review.
    @param audiences: C{spec.audiences}.
    """
    wanted = list(audiences) or list(API_AUDIENCES)
    entry = tokens.get(token)
    if entry is None:
        return {"user": {}, "error": INVALID_TOKEN}
    bound = entry.get("audiences")
    granted = wanted if bound is None else [a for a in wanted if a in bound]
    if not granted:
        detail = (
            f"token audiences {_go_strings(bound or [])} is invalid for the "
            f"target audiences {_go_strings(wanted)}"
        )
        return {"user": {}, "error": f"[{INVALID_TOKEN}, {detail}]"}
    return {"authenticated": True, "user": _user_info(entry), "audiences": granted}


def _go_strings(values: Sequence[str]) -> str:
    """
    A string slice as Go's C{%q} prints it: C{["a" "b"]}.
    """
    return "[" + " ".join(field.go_quote(v) for v in values) + "]"


def _listed(rule: Mapping[str, Any], key: str, value: str) -> bool:
    """
    Whether C{rule[key]} allows C{value}: a missing key or C{"*"} allows
    anything.
    """
    allowed = rule.get(key)
    return allowed is None or "*" in allowed or value in allowed


def _resource_listed(rule: Mapping[str, Any], resource: str, subresource: str) -> bool:
    allowed = rule.get("resources")
    if allowed is None or "*" in allowed:
        return True
    if not subresource:
        return resource in allowed
    return f"{resource}/{subresource}" in allowed or f"*/{subresource}" in allowed


def _url_listed(rule: Mapping[str, Any], path: str) -> bool:
    allowed = rule.get("nonResourceURLs")
    if allowed is None:
        return True
    return any(
        each == "*"
        or each == path
        or (each.endswith("*") and path.startswith(each[:-1]))
        for each in allowed
    )


def _subject_matches(rule: Mapping[str, Any], spec: Mapping[str, Any]) -> bool:
    user = rule.get("user")
    if user is not None and user != "*" and user != spec.get("user", ""):
        return False
    group = rule.get("group")
    groups = spec.get("groups") or []
    return group is None or group == "*" or group in groups


def rule_matches(rule: Mapping[str, Any], spec: Mapping[str, Any]) -> bool:
    """
    Whether an allow rule (see L{KubeStandIn.set_access_rules}) covers a
    SubjectAccessReview C{spec}.

    A rule with C{nonResourceURLs} covers only non-resource requests; one
    with C{groups}, C{resources}, C{namespaces} or C{names} only resource
    requests; one with neither covers both.  C{names} needs the request to
    name an object; C{namespaces} needs it to be in a namespace (unless the
    list holds C{"*"}).
    """
    if not _subject_matches(rule, spec):
        return False
    attributes = spec.get("resourceAttributes")
    if attributes is None:
        attributes = spec.get("nonResourceAttributes") or {}
        return (
            not (_RESOURCE_RULE_KEYS & rule.keys())
            and _listed(rule, "verbs", attributes.get("verb", ""))
            and _url_listed(rule, attributes.get("path", ""))
        )
    if "nonResourceURLs" in rule:
        return False
    return (
        _listed(rule, "verbs", attributes.get("verb", ""))
        and _listed(rule, "groups", attributes.get("group", ""))
        and _resource_listed(
            rule, attributes.get("resource", ""), attributes.get("subresource", "")
        )
        and _listed(rule, "namespaces", attributes.get("namespace", ""))
        and _listed(rule, "names", attributes.get("name", ""))
    )


def access_review_status(
    rules: Sequence[Mapping[str, Any]], spec: Mapping[str, Any]
) -> Object:
    """
    The C{status} of a SubjectAccessReview: allowed by the first matching
    rule, else not allowed.
    """
    for index, rule in enumerate(rules):
        if rule_matches(rule, spec):
            return {"allowed": True, "reason": f"allowed by stand-in rule {index}"}
    return {"allowed": False, "reason": "no stand-in rule matches"}


def _check_strings(value: Any, where: str) -> None:
    if not isinstance(value, str):
        raise _decode_error(where, "string", value)


def _decode_error(where: str, expected: str, value: Any) -> StatusError:
    found = {
        bool: "bool",
        int: "number",
        float: "number",
        str: "string",
        list: "array",
        dict: "object",
    }.get(type(value), "value")
    return apierrors.bad_request(
        f"json: cannot unmarshal {found} into Go struct field {where} "
        f"of type {expected}"
    )


def check_access_review_types(spec: Mapping[str, Any]) -> None:
    """
    Reject a spec Go could not decode (wrong JSON types) with 400.
    """
    for key in ("user", "uid"):
        if key in spec:
            _check_strings(spec[key], f"SubjectAccessReviewSpec.spec.{key}")
    groups = spec.get("groups") or []
    if not isinstance(groups, list):
        raise _decode_error("SubjectAccessReviewSpec.spec.groups", "[]string", groups)
    for group in groups:
        _check_strings(group, "SubjectAccessReviewSpec.spec.groups")
    extra = spec.get("extra") or {}
    if not isinstance(extra, dict) or not all(
        isinstance(v, list) for v in extra.values()
    ):
        raise _decode_error(
            "SubjectAccessReviewSpec.spec.extra", "v1.ExtraValue", extra
        )
    for key in ("resourceAttributes", "nonResourceAttributes"):
        attributes = spec.get(key)
        if attributes is not None and not isinstance(attributes, dict):
            raise _decode_error(f"SubjectAccessReviewSpec.spec.{key}", key, attributes)
        for name, value in (attributes or {}).items():
            if name not in ("fieldSelector", "labelSelector"):
                _check_strings(value, f"SubjectAccessReviewSpec.spec.{key}.{name}")


def validate_access_review(spec: Mapping[str, Any]) -> list[field.FieldError]:
    """
    kube-apiserver's C{ValidateSubjectAccessReviewSpec}.
    """
    errors: list[field.FieldError] = []
    resource = spec.get("resourceAttributes")
    non_resource = spec.get("nonResourceAttributes")
    if resource is not None and non_resource is not None:
        errors.append(
            field.invalid(
                "spec.nonResourceAttributes",
                non_resource,
                "cannot be specified in combination with resourceAttributes",
            )
        )
    if resource is None and non_resource is None:
        errors.append(
            field.invalid(
                "spec.resourceAttributes",
                None,
                "exactly one of nonResourceAttributes or resourceAttributes "
                "must be specified",
            )
        )
    if not spec.get("user") and not spec.get("groups"):
        errors.append(
            field.invalid(
                "spec.user",
                spec.get("user", ""),
                "at least one of user or group must be specified",
            )
        )
    return errors


# --- the cluster's state -----------------------------------------------------


@attrs.frozen
class WatchEvent:
    """
    A change, kept in the history so watches can replay what they missed.

    @ivar resource_version: the change's resource version.
    @ivar resource: C{"namespaces"} or C{"configmaps"}.
    @ivar type: C{ADDED}, C{MODIFIED} or C{DELETED}.
    @ivar object: the object after the change (the last state for
        C{DELETED}, with the deletion's resource version).
    @ivar previous: the object before the change, or C{None}.
    """

    resource_version: int
    resource: str
    type: str
    object: Object
    previous: Object | None


def event_for(event: WatchEvent, matches: Predicate) -> tuple[str, Object] | None:
    """
    What a watch filtered by C{matches} sees of C{event}, as the watch cache
    does it: an object that stops matching is C{DELETED}, one that starts
    matching is C{ADDED}.
    """
    now = matches(event.object)
    before = event.previous is not None and matches(event.previous)
    if event.type == "MODIFIED":
        if now and before:
            return "MODIFIED", event.object
        if now or before:
            return ("ADDED" if now else "DELETED"), event.object
        return None
    return (event.type, event.object) if now else None


class Watcher:
    """
    One open watch response.
    """

    def __init__(
        self, request: Request, resource: str, matches: Predicate, bookmarks: bool
    ) -> None:
        self.request = request
        self.resource = resource
        self.matches = matches
        self.bookmarks = bookmarks
        self.timer: IDelayedCall | None = None
        self.done = False

    def send(self, event_type: str, item: Object) -> None:
        """
        Write one event line.
        """
        if not self.done:
            self.request.write(_encode({"type": event_type, "object": item}) + b"\n")

    def offer(self, event: WatchEvent) -> None:
        """
        Send C{event} if this watch is for its resource and it concerns an
        object the watch selects.
        """
        if event.resource != self.resource:
            return
        seen = event_for(event, self.matches)
        if seen is not None:
            self.send(*seen)

    def close(self) -> None:
        """
        End the stream; idempotent.
        """
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        if not self.done:
            self.done = True
            self.request.finish()


class Cluster:
    """
    Everything the stand-in knows: namespaces, the authentication ConfigMap,
    tokens, access rules, the event history, open watches and recorded calls.
    """

    def __init__(self) -> None:
        self.resource_version = FIRST_RESOURCE_VERSION
        self.oldest_watchable = FIRST_RESOURCE_VERSION
        self.history: list[WatchEvent] = []
        self.namespaces: dict[str, Object] = {}
        self.configmap: Object | None = None
        self.tokens: dict[str, Mapping[str, Any]] = {}
        self.rules: list[Mapping[str, Any]] = []
        self.available = True
        self.calls: list[Object] = []
        self.watchers: set[Watcher] = set()
        for name in INITIAL_NAMESPACES:
            self.set_namespace(name, "Active")

    def _commit(
        self, resource: str, event_type: str, item: Object, previous: Object | None
    ) -> None:
        self.resource_version += 1
        item["metadata"]["resourceVersion"] = str(self.resource_version)
        event = WatchEvent(
            self.resource_version, resource, event_type, copy.deepcopy(item), previous
        )
        self.history.append(event)
        if len(self.history) > HISTORY_LIMIT:
            dropped = self.history.pop(0)
            self.oldest_watchable = dropped.resource_version
        for watcher in list(self.watchers):
            watcher.offer(event)

    def set_namespace(self, name: str, phase: str) -> None:
        """
        Create or update namespace C{name}; C{Terminating} sets
        C{deletionTimestamp}, C{Active} clears it.
        """
        previous = self.namespaces.get(name)
        item = copy.deepcopy(previous) if previous else _new_namespace(name)
        metadata = item["metadata"]
        if phase == "Terminating":
            metadata.setdefault("deletionTimestamp", _timestamp())
        else:
            metadata.pop("deletionTimestamp", None)
        item["status"] = {"phase": phase}
        self.namespaces[name] = item
        self._commit("namespaces", "MODIFIED" if previous else "ADDED", item, previous)

    def delete_namespace(self, name: str) -> None:
        """
        Remove namespace C{name}.

        @raise KeyError: there is none.
        """
        previous = self.namespaces.pop(name)
        self._commit("namespaces", "DELETED", copy.deepcopy(previous), previous)

    def set_configmap(self, data: Mapping[str, str] | None) -> None:
        """
        Create, update or (C{None}) remove the authentication ConfigMap.
        """
        previous = self.configmap
        if data is None:
            self.configmap = None
            if previous is not None:
                self._commit("configmaps", "DELETED", copy.deepcopy(previous), previous)
            return
        item = copy.deepcopy(previous) if previous else _new_configmap()
        item["data"] = dict(data)
        self.configmap = item
        self._commit("configmaps", "MODIFIED" if previous else "ADDED", item, previous)

    def objects(self, resource: str) -> list[Object]:
        """
        The current objects of C{resource}, ordered by name.
        """
        if resource == "namespaces":
            return [self.namespaces[name] for name in sorted(self.namespaces)]
        return [] if self.configmap is None else [self.configmap]

    def compact(self) -> None:
        """
        Forget the event history: watches from any older resource version
        now get 410.
        """
        self.history.clear()
        self.oldest_watchable = self.resource_version

    def set_available(self, available: bool) -> None:
        """
        Switch unavailable mode; turning it on ends every open watch.
        """
        self.available = available
        if not available:
            for watcher in list(self.watchers):
                watcher.close()

    def send_bookmark(self) -> None:
        """
        Send a C{BOOKMARK} at the current resource version to every watch
        that allowed bookmarks.
        """
        for watcher in list(self.watchers):
            if watcher.bookmarks:
                watcher.send(
                    "BOOKMARK", _bookmark(watcher.resource, self.resource_version)
                )


def _new_namespace(name: str) -> Object:
    return {
        "kind": "Namespace",
        "apiVersion": "v1",
        "metadata": {
            "name": name,
            "uid": str(uuid.uuid4()),
            "resourceVersion": "",
            "creationTimestamp": _timestamp(),
            "labels": {NAME_LABEL: name},
        },
        "spec": {"finalizers": ["kubernetes"]},
        "status": {"phase": "Active"},
    }


def _new_configmap() -> Object:
    return {
        "kind": "ConfigMap",
        "apiVersion": "v1",
        "metadata": {
            "name": AUTH_CONFIGMAP,
            "namespace": AUTH_CONFIGMAP_NAMESPACE,
            "uid": str(uuid.uuid4()),
            "resourceVersion": "",
            "creationTimestamp": _timestamp(),
        },
        "data": {},
    }


def _bookmark(resource: str, resource_version: int) -> Object:
    kind = "Namespace" if resource == "namespaces" else "ConfigMap"
    item: Object = {
        "kind": kind,
        "apiVersion": "v1",
        "metadata": {
            "resourceVersion": str(resource_version),
            "creationTimestamp": None,
        },
    }
    if resource == "namespaces":
        item.update(spec={}, status={})
    return item


# --- HTTP: the kube API ------------------------------------------------------


def _segments(request: Request) -> list[str]:
    path = (request.path or b"/").decode("utf-8", "replace")
    return [urllib.parse.unquote(p) for p in path.split("/") if p]


def _query(request: Request) -> dict[str, str]:
    """
    The query parameters, first value of each (as Go's C{url.Values.Get}).
    """
    query: dict[str, str] = {}
    for key, values in (request.args or {}).items():
        if values:
            query.setdefault(
                key.decode("utf-8", "replace"), values[0].decode("utf-8", "replace")
            )
    return query


def _headers(request: Request) -> dict[str, str]:
    return {
        name.decode("latin-1").lower(): ", ".join(v.decode("latin-1") for v in values)
        for name, values in request.requestHeaders.getAllRawHeaders()
    }


def _read_json(request: Request) -> Any:
    """
    The request body parsed as JSON, or C{None} when empty or not JSON.
    """
    content = request.content
    if content is None:
        return None
    content.seek(0)
    raw = content.read()
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None


def _go_bool(value: str, name: str) -> bool:
    if value in ("1", "t", "T", "true", "TRUE", "True"):
        return True
    if value in ("0", "f", "F", "false", "FALSE", "False", ""):
        return False
    raise apierrors.bad_request(
        f'strconv.ParseBool: parsing "{value}": invalid syntax ({name})'
    )


def _write(request: Request, code: int, body: Any) -> bytes:
    request.setResponseCode(code)
    request.setHeader(b"content-type", b"application/json")
    return _encode(body) + b"\n"


def _write_error(request: Request, error: StatusError) -> bytes:
    return _write(request, error.code, error.status())


@attrs.frozen
class Route:
    """
    A kube API path the stand-in serves: the kind recorded for it, the
    handler and the handler's path arguments.
    """

    kind: str
    handler: Callable[..., bytes | int]
    arguments: tuple[str, ...] = ()


class KubeAPI(Resource):
    """
    The root resource: kube API paths, plus the control endpoints under
    C{/standin/}.
    """

    isLeaf = True

    def __init__(self, cluster: Cluster, clock: IReactorTime) -> None:
        super().__init__()
        self.cluster = cluster
        self.clock = clock
        self.control = Control(cluster)

    def render(self, request: Request) -> bytes | int:
        request.setHeader(b"audit-id", str(uuid.uuid4()).encode("ascii"))
        request.setHeader(b"cache-control", b"no-cache, private")
        segments = _segments(request)
        if segments[:1] == [CONTROL_PREFIX]:
            return self.control.render(request, segments[1:])
        return self._serve(request, self._route(segments))

    def _route(self, segments: list[str]) -> Route | None:
        match segments:
            case ["apis", "authentication.k8s.io", "v1", "tokenreviews"]:
                return Route("tokenreview", self._token_review)
            case ["apis", "authorization.k8s.io", "v1", "subjectaccessreviews"]:
                return Route("subjectaccessreview", self._access_review)
            case ["api", "v1", "namespaces"]:
                return Route("namespace-list", self._namespaces)
            case ["api", "v1", "namespaces", name]:
                return Route("namespace-get", self._namespace, (name,))
            case ["api", "v1", "namespaces", namespace, "configmaps"]:
                return Route("configmap-list", self._configmaps, (namespace,))
            case ["api", "v1", "namespaces", namespace, "configmaps", name]:
                return Route("configmap", self._configmap, (namespace, name))
        return None

    def _serve(self, request: Request, route: Route | None) -> bytes | int:
        call = self._record(request, route)
        if not self.cluster.available:
            return _write_error(
                request, apierrors.service_unavailable(UNAVAILABLE_MESSAGE)
            )
        call["user"] = self._authenticate(request)
        if call["user"] is None:
            return _write_error(request, apierrors.unauthorized())
        if route is None:
            return _write_error(request, apierrors.server_not_found())
        try:
            return route.handler(request, *route.arguments)
        except StatusError as error:
            return _write_error(request, error)

    def _record(self, request: Request, route: Route | None) -> Object:
        query = _query(request)
        kind = route.kind if route is not None else "other"
        if kind.endswith("-list") and _is_true(query.get("watch", "")):
            kind = kind.replace("-list", "-watch")
        call: Object = {
            "kind": kind,
            "method": request.method.decode("ascii"),
            "path": (request.path or b"").decode("utf-8", "replace"),
            "query": query,
            "headers": _headers(request),
            "body": _read_json(request),
            "user": None,
        }
        self.cluster.calls.append(call)
        return call

    def _authenticate(self, request: Request) -> str | None:
        identity = client_certificate_identity(request)
        if identity is not None:
            return identity[0]
        scheme, _, token = (
            (request.getHeader(b"authorization") or b"")
            .decode("latin-1")
            .partition(" ")
        )
        entry = (
            self.cluster.tokens.get(token.strip())
            if scheme.lower() == "bearer"
            else None
        )
        return None if entry is None else str(entry.get("username", ""))

    # -- reviews

    def _token_review(self, request: Request) -> bytes:
        review = _review_body(request, "TokenReview")
        spec = review.get("spec") or {}
        token = spec.get("token", "")
        audiences = spec.get("audiences") or []
        if not isinstance(token, str) or not isinstance(audiences, list):
            raise _decode_error("TokenReviewSpec.spec", "v1.TokenReviewSpec", spec)
        if not token:
            raise apierrors.bad_request(
                "token is required for TokenReview in authentication"
            )
        echoed = {"token": token, **({"audiences": audiences} if audiences else {})}
        body = _review_response(
            review, "authentication.k8s.io/v1", "TokenReview", echoed
        )
        body["status"] = token_review_status(self.cluster.tokens, token, audiences)
        return _write(request, 201, body)

    def _access_review(self, request: Request) -> bytes:
        review = _review_body(request, "SubjectAccessReview")
        spec = review.get("spec") or {}
        if not isinstance(spec, dict):
            raise _decode_error(
                "SubjectAccessReview.spec", "v1.SubjectAccessReviewSpec", spec
            )
        check_access_review_types(spec)
        errors = validate_access_review(spec)
        if errors:
            raise apierrors.invalid(GroupKind("authorization.k8s.io", ""), "", errors)
        body = _review_response(
            review, "authorization.k8s.io/v1", "SubjectAccessReview", spec
        )
        body["status"] = access_review_status(self.cluster.rules, spec)
        return _write(request, 201, body)

    # -- namespaces and the ConfigMap

    def _namespace(self, request: Request, name: str) -> bytes:
        _only_get(request)
        item = self.cluster.namespaces.get(name)
        if item is None:
            raise apierrors.not_found(NAMESPACES, name)
        return _write(request, 200, item)

    def _namespaces(self, request: Request) -> bytes | int:
        _only_get(request)
        return self._list_or_watch(request, "namespaces", lambda item: True)

    def _configmap(self, request: Request, namespace: str, name: str) -> bytes:
        _only_get(request)
        item = self.cluster.configmap
        if item is None or (namespace, name) != (
            AUTH_CONFIGMAP_NAMESPACE,
            AUTH_CONFIGMAP,
        ):
            raise apierrors.not_found(CONFIGMAPS, name)
        return _write(request, 200, item)

    def _configmaps(self, request: Request, namespace: str) -> bytes | int:
        _only_get(request)

        def in_namespace(item: Object) -> bool:
            return bool(item["metadata"]["namespace"] == namespace)

        return self._list_or_watch(request, "configmaps", in_namespace)

    def _list_or_watch(
        self, request: Request, resource: str, scope: Predicate
    ) -> bytes | int:
        query = _query(request)
        matches = _selection(resource, query, scope)
        if _go_bool(query.get("watch", ""), "watch"):
            return self._watch(request, resource, matches, query)
        kind = "NamespaceList" if resource == "namespaces" else "ConfigMapList"
        items = [_without_type(i) for i in self.cluster.objects(resource) if matches(i)]
        return _write(
            request,
            200,
            {
                "kind": kind,
                "apiVersion": "v1",
                "metadata": {"resourceVersion": str(self.cluster.resource_version)},
                "items": items,
            },
        )

    def _watch(
        self,
        request: Request,
        resource: str,
        matches: Predicate,
        query: Mapping[str, str],
    ) -> int:
        start = _resource_version(
            query.get("resourceVersion", ""), self.cluster.resource_version
        )
        bookmarks = _go_bool(
            query.get("allowWatchBookmarks", ""), "allowWatchBookmarks"
        )
        watcher = Watcher(request, resource, matches, bookmarks)
        request.setResponseCode(200)
        request.setHeader(b"content-type", b"application/json")
        request.write(b"")
        if start is not None and start < self.cluster.oldest_watchable:
            watcher.send("ERROR", _expired(start, self.cluster.oldest_watchable))
            watcher.close()
            return NOT_DONE_YET
        self._replay(watcher, start)
        self._keep_open(watcher, query.get("timeoutSeconds", ""))
        return NOT_DONE_YET

    def _replay(self, watcher: Watcher, start: int | None) -> None:
        if start is None:
            for item in self.cluster.objects(watcher.resource):
                if watcher.matches(item):
                    watcher.send("ADDED", item)
            return
        for event in self.cluster.history:
            if event.resource_version > start:
                watcher.offer(event)

    def _keep_open(self, watcher: Watcher, timeout: str) -> None:
        self.cluster.watchers.add(watcher)

        def forget(reason: object) -> None:
            watcher.done = True
            watcher.close()
            self.cluster.watchers.discard(watcher)

        watcher.request.notifyFinish().addBoth(forget)
        if timeout:
            watcher.timer = self.clock.callLater(_seconds(timeout), watcher.close)


def _is_true(value: str) -> bool:
    try:
        return _go_bool(value, "watch")
    except StatusError:
        return False


def _seconds(text: str) -> float:
    try:
        return max(0.0, float(int(text)))
    except ValueError:
        raise apierrors.bad_request(
            f'strconv.ParseInt: parsing "{text}": invalid syntax (timeoutSeconds)'
        ) from None


def _resource_version(text: str, current: int) -> int | None:
    """
    A watch's starting point: C{None} for C{""}/C{"0"} (start with the
    current objects as ADDED events), else the number.

    @raise StatusError: 400 for a non-number; 504 for a version newer than
        C{current}.
    """
    if text in ("", "0"):
        return None
    try:
        value = int(text)
    except ValueError:
        raise apierrors.bad_request(f'invalid resource version "{text}"') from None
    if value > current:
        error = apierrors.timeout(
            f"Too large resource version: {value}, current: {current}", retry_after=1
        )
        raise error
    return value


def _expired(start: int, oldest: int) -> Object:
    return apierrors.gone(f"too old resource version: {start} ({oldest})").status()


def _selection(resource: str, query: Mapping[str, str], scope: Predicate) -> Predicate:
    by_field = field_predicate(resource, query.get("fieldSelector", ""))
    by_label = label_predicate(query.get("labelSelector", ""))
    return lambda item: scope(item) and by_field(item) and by_label(item)


def _method_not_allowed() -> StatusError:
    """
    The 405 kube-apiserver gives for a method a path does not serve.
    """
    return StatusError(
        405,
        "MethodNotAllowed",
        "the server does not allow this method on the requested resource",
        {},
    )


def _only_get(request: Request) -> None:
    if request.method != b"GET":
        raise _method_not_allowed()


def _review_body(request: Request, kind: str) -> Object:
    if request.method != b"POST":
        raise _method_not_allowed()
    review = _read_json(request)
    if not isinstance(review, dict):
        raise apierrors.bad_request(f"the body of the request was not a {kind} in JSON")
    return review


def _review_response(
    review: Object, api_version: str, kind: str, spec: Object
) -> Object:
    metadata = (
        review.get("metadata") if isinstance(review.get("metadata"), dict) else {}
    )
    return {
        "kind": kind,
        "apiVersion": api_version,
        "metadata": {**(metadata or {}), "creationTimestamp": None},
        "spec": spec,
    }


# --- HTTP: control endpoints -------------------------------------------------


class ControlError(Exception):
    """
    A control request the stand-in refuses (400 with C{{"error": ...}}).
    """


def _check_tokens(tokens: Any) -> dict[str, Mapping[str, Any]]:
    if not isinstance(tokens, dict):
        raise ControlError("tokens must be an object")
    for token, entry in tokens.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("username"), str):
            raise ControlError(f"token {token!r}: needs a string username")
        unknown = set(entry) - TOKEN_KEYS
        if unknown:
            raise ControlError(f"token {token!r}: unknown keys {sorted(unknown)}")
    return dict(tokens)


def _check_rules(rules: Any) -> list[Mapping[str, Any]]:
    if not isinstance(rules, list):
        raise ControlError("rules must be a list")
    for index, rule in enumerate(rules):
        if not isinstance(rule, dict):
            raise ControlError(f"rule {index} is not an object")
        unknown = set(rule) - RULE_KEYS
        if unknown:
            raise ControlError(f"rule {index}: unknown keys {sorted(unknown)}")
        for key in RULE_KEYS - {"user", "group"}:
            if key in rule and not isinstance(rule[key], list):
                raise ControlError(f"rule {index}: {key} must be a list")
    return list(rules)


class Control:
    """
    The test's control endpoints, C{/standin/...}; they need a client
    certificate from the stand-in's CA and are not recorded.
    """

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster

    def render(self, request: Request, segments: list[str]) -> bytes:
        if client_certificate_identity(request) is None:
            return _write_error(request, apierrors.unauthorized())
        method = request.method.decode("ascii")
        body = _read_json(request)
        try:
            result = self._dispatch(method, segments, body, _query(request))
        except ControlError as error:
            return _write(request, 400, {"error": str(error)})
        except KeyError as error:
            return _write(request, 404, {"error": f"not found: {error}"})
        if result is None:
            return _write(
                request, 404, {"error": f"no control endpoint {method} {segments}"}
            )
        return _write(request, 200, result)

    def _dispatch(
        self, method: str, segments: list[str], body: Any, query: Mapping[str, str]
    ) -> Any:
        cluster = self.cluster
        payload = body if isinstance(body, dict) else {}
        match method, segments:
            case "GET", ["healthz"]:
                return {
                    "ok": True,
                    "pid": os.getpid(),
                    "resourceVersion": str(cluster.resource_version),
                }
            case "PUT", ["tokens"]:
                cluster.tokens = _check_tokens(payload.get("tokens"))
            case "PUT", ["access-rules"]:
                cluster.rules = _check_rules(payload.get("rules"))
            case "PUT", ["configmap"]:
                cluster.set_configmap(_check_data(payload.get("data")))
            case "PUT", ["namespaces", name]:
                cluster.set_namespace(
                    name, _check_phase(payload.get("phase", "Active"))
                )
            case "DELETE", ["namespaces", name]:
                cluster.delete_namespace(name)
            case "PUT", ["available"]:
                cluster.set_available(bool(payload.get("available")))
            case "POST", ["compact"]:
                cluster.compact()
            case "POST", ["bookmark"]:
                cluster.send_bookmark()
            case "GET", ["calls"]:
                kind = query.get("kind")
                return [c for c in cluster.calls if kind is None or c["kind"] == kind]
            case "DELETE", ["calls"]:
                cluster.calls.clear()
            case _:
                return None
        return {"resourceVersion": str(cluster.resource_version)}


def _check_data(data: Any) -> dict[str, str] | None:
    if data is None:
        return None
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise ControlError("data must be an object of strings, or null")
    return data


def _check_phase(phase: Any) -> str:
    if phase not in PHASES:
        raise ControlError(f"phase must be one of {list(PHASES)}, not {phase!r}")
    return str(phase)


# --- the server process ------------------------------------------------------


def serve(reactor: Any, port: int, directory: str) -> KubeAPI:
    """
    Listen on 127.0.0.1:C{port} with the certificates in C{directory}.

    @return: the root resource (its C{cluster} is the state).
    """

    def path(name: str) -> str:
        return os.path.join(directory, name)

    options = server_tls_options(
        path(SERVER_CERT_NAME), path(SERVER_KEY_NAME), path(CA_CERT_NAME)
    )
    root = KubeAPI(Cluster(), cast(IReactorTime, reactor))
    site = Site(root)
    site.acceptableProtocols = lambda: [b"http/1.1"]  # type: ignore[method-assign]
    factory = TLSMemoryBIOFactory(options, False, site)
    listener = cast(IReactorTCP, reactor)
    listener.listenTCP(port, factory, interface="127.0.0.1")  # type: ignore[arg-type]
    return root


def main(argv: Sequence[str] | None = None) -> None:
    """
    C{python -m tests.kubestandin --port P --directory D}: serve until
    SIGTERM, logging to stdout.
    """
    parser = argparse.ArgumentParser(prog="kubestandin")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--directory", required=True)
    arguments = parser.parse_args(argv)
    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stdout)])
    from twisted.internet import reactor

    serve(reactor, arguments.port, arguments.directory)
    print(f"kubestandin listening on 127.0.0.1:{arguments.port}", flush=True)
    reactor.run()


# --- the test side (blocking; never under a reactor) -------------------------


class StandInError(RuntimeError):
    """
    The stand-in refused a control request, or did not start.
    """


def _make_certificates(directory: str) -> None:
    def path(name: str) -> str:
        return os.path.join(directory, name)

    ca = certs.make_ca("kube-standin-ca")
    certs.write_key_pair(ca, path(CA_CERT_NAME), path(CA_KEY_NAME))
    serving = certs.make_serving_cert(ca, ["127.0.0.1", "localhost"])
    certs.write_key_pair(serving, path(SERVER_CERT_NAME), path(SERVER_KEY_NAME))
    client = certs.make_client_cert(ca, CLIENT_USER, [])
    certs.write_key_pair(client, path(CLIENT_CERT_NAME), path(CLIENT_KEY_NAME))


class KubeStandIn:
    """
    A running stand-in kube-apiserver (see the module docstring) and its
    controls.  Every method blocks; a control call fails with
    L{StandInError} (or a socket timeout while L{pause}d).

    @ivar url: C{https://127.0.0.1:<port>}.
    @ivar port: the HTTPS port.
    @ivar directory: where the certificates, kubeconfig and log are.
    @ivar ca_file: the CA that signed the serving and client certificates.
    @ivar client_cert_file: the client certificate (CN=wardled).
    @ivar client_key_file: its key.
    @ivar kubeconfig: a kubeconfig for wardled (server, CA, client
        certificate and key) to pass as C{--authentication-kubeconfig},
        C{--authorization-kubeconfig} and C{--kubeconfig}.
    """

    def __init__(
        self, process: subprocess.Popen[bytes], port: int, directory: str
    ) -> None:
        self._process = process
        self.port = port
        self.url = f"https://127.0.0.1:{port}"
        self.directory = directory
        self.ca_file = os.path.join(directory, CA_CERT_NAME)
        self.client_cert_file = os.path.join(directory, CLIENT_CERT_NAME)
        self.client_key_file = os.path.join(directory, CLIENT_KEY_NAME)
        self.kubeconfig = os.path.join(directory, KUBECONFIG_NAME)
        self._log_path = os.path.join(directory, LOG_NAME)

    @classmethod
    def start(cls, directory: str, timeout: float = START_TIMEOUT) -> KubeStandIn:
        """
        Make a CA, a serving certificate for 127.0.0.1/localhost, a client
        certificate CN=wardled and a kubeconfig in C{directory}, start the
        stand-in on a free port and wait until it answers.

        It starts with namespaces C{default}, C{kube-system} and
        C{kube-public} (Active), no ConfigMap, no tokens and no access rules.

        @raise StandInError: it exited or did not answer within C{timeout}.
        """
        os.makedirs(directory, exist_ok=True)
        _make_certificates(directory)
        port = free_port()
        arguments = ["--port", str(port), "--directory", os.path.abspath(directory)]
        log_path = os.path.join(directory, LOG_NAME)
        process = spawn_module("tests.kubestandin", arguments, log_path)
        standin = cls(process, port, directory)
        certs.write_kubeconfig(
            standin.kubeconfig,
            standin.url,
            standin.ca_file,
            standin.client_cert_file,
            standin.client_key_file,
            CLIENT_USER,
        )
        try:
            standin._wait_ready(timeout)
        except BaseException:
            standin.stop()
            raise
        return standin

    def _wait_ready(self, timeout: float) -> None:
        wait_serving(
            self._process,
            self._answers,
            timeout,
            exited=lambda code: StandInError(
                f"kubestandin exited with {code}; output:\n{self.output()}"
            ),
            timed_out=lambda: StandInError(
                f"kubestandin did not answer; output:\n{self.output()}"
            ),
        )

    def _answers(self) -> bool:
        try:
            self._control("GET", "/healthz", timeout=1.0)
        except (OSError, http.client.HTTPException):
            return False
        return True

    @property
    def pid(self) -> int:
        """
        The server process's id.
        """
        return self._process.pid

    def ssl_context(self, client_certificate: bool = True) -> ssl.SSLContext:
        """
        A client TLS context that trusts the stand-in's CA and (by default)
        presents the CN=wardled client certificate.
        """
        context = ssl.create_default_context(cafile=self.ca_file)
        if client_certificate:
            context.load_cert_chain(self.client_cert_file, self.client_key_file)
        return context

    def connection(
        self, client_certificate: bool = True, timeout: float = CONTROL_TIMEOUT
    ) -> http.client.HTTPSConnection:
        """
        A new HTTPS connection to the stand-in (see L{ssl_context}).
        """
        return http.client.HTTPSConnection(
            "127.0.0.1",
            self.port,
            timeout=timeout,
            context=self.ssl_context(client_certificate),
        )

    def _control(
        self, method: str, path: str, body: Any = None, timeout: float = CONTROL_TIMEOUT
    ) -> Any:
        connection = self.connection(timeout=timeout)
        try:
            payload = None if body is None else _encode(body)
            headers = {"Content-Type": "application/json"} if payload else {}
            connection.request(
                method, f"/{CONTROL_PREFIX}{path}", body=payload, headers=headers
            )
            response = connection.getresponse()
            answer = json.loads(response.read() or b"null")
        finally:
            connection.close()
        if response.status != 200:
            raise StandInError(f"{method} {path}: {response.status} {answer}")
        return answer

    def set_tokens(self, tokens: Mapping[str, Mapping[str, Any]]) -> None:
        """
        Replace the known bearer tokens: token to C{{"username", "uid",
        "groups", "extra"}} (plus optional C{"audiences"}: the token is then
        valid only for those).  Other tokens are unauthenticated.  Reviews
        of known tokens add C{system:authenticated} to the groups, as
        kube-apiserver does.  Known tokens also authenticate requests to
        the stand-in itself.
        """
        self._control(
            "PUT", "/tokens", {"tokens": {k: dict(v) for k, v in tokens.items()}}
        )

    def set_access_rules(self, rules: Sequence[Mapping[str, Any]]) -> None:
        """
        Replace the SubjectAccessReview allow rules.

        Each rule may have C{user} (matches C{spec.user}), C{group} (matches
        any of C{spec.groups}), and lists C{verbs}, C{groups} (API groups),
        C{resources} (C{"res"} or C{"res/sub"}), C{namespaces}, C{names},
        C{nonResourceURLs} (a trailing C{*} matches a prefix).  A missing key
        or C{"*"} matches anything.  A review is allowed when any rule
        matches (see L{rule_matches}).
        """
        self._control("PUT", "/access-rules", {"rules": [dict(r) for r in rules]})

    def set_configmap(self, data: Mapping[str, str] | None) -> None:
        """
        Set the C{data} of C{kube-system/extension-apiserver-authentication};
        C{None} removes it (GET then gives 404).
        """
        self._control(
            "PUT", "/configmap", {"data": None if data is None else dict(data)}
        )

    def set_namespace(self, name: str, phase: str = "Active") -> None:
        """
        Create or update a namespace (C{"Active"} or C{"Terminating"}, which
        also sets C{deletionTimestamp}); watches get ADDED or MODIFIED.
        """
        self._control(
            "PUT", f"/namespaces/{urllib.parse.quote(name, safe='')}", {"phase": phase}
        )

    def delete_namespace(self, name: str) -> None:
        """
        Remove a namespace; watches get DELETED.

        @raise StandInError: there is no such namespace.
        """
        self._control("DELETE", f"/namespaces/{urllib.parse.quote(name, safe='')}")

    def set_available(self, available: bool) -> None:
        """
        C{False}: every kube API request gets 503 (reason
        C{ServiceUnavailable}) and open watches end.  C{True}: back to normal.
        """
        self._control("PUT", "/available", {"available": available})

    def compact(self) -> None:
        """
        Forget the watch history, so a watch from any resource version
        older than the current one gets a 410 C{Expired} ERROR event.
        """
        self._control("POST", "/compact")

    def send_bookmark(self) -> None:
        """
        Send a C{BOOKMARK} event (current resource version) to every open
        watch that asked for C{allowWatchBookmarks}.
        """
        self._control("POST", "/bookmark")

    def resource_version(self) -> str:
        """
        The current resource version.
        """
        return str(self._control("GET", "/healthz")["resourceVersion"])

    def calls(self, kind: str | None = None) -> list[dict[str, Any]]:
        """
        The recorded kube API requests, oldest first, optionally only those
        of one C{kind}: C{tokenreview}, C{subjectaccessreview},
        C{configmap}, C{configmap-list}, C{configmap-watch},
        C{namespace-get}, C{namespace-list}, C{namespace-watch} or C{other}.

        Each is C{{"kind", "method", "path", "query" (first value per key),
        "headers" (lower-case names), "body" (parsed JSON or None), "user"
        (the client certificate's CN, or the bearer token's user name;
        None when unauthenticated or unavailable)}}.
        """
        query = "" if kind is None else "?" + urllib.parse.urlencode({"kind": kind})
        return list(self._control("GET", f"/calls{query}"))

    def reset_calls(self) -> None:
        """
        Forget the recorded calls.
        """
        self._control("DELETE", "/calls")

    def pause(self) -> None:
        """
        SIGSTOP the server: connections hang (a cluster that stopped
        answering).  Control calls fail until L{resume}.
        """
        self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """
        SIGCONT the server.
        """
        self._process.send_signal(signal.SIGCONT)

    def output(self) -> str:
        """
        What the server logged so far.
        """
        return read_log(self._log_path, "(no output)")

    def stop(self) -> None:
        """
        Terminate the server and wait; idempotent.
        """
        process = self._process
        if process.poll() is None:
            process.send_signal(signal.SIGCONT)
        stop_process(process)

    def __repr__(self) -> str:
        return f"<KubeStandIn {self.url} pid={self._process.pid}>"


__all__ = ["KubeStandIn", "StandInError", "main"]


if __name__ == "__main__":
    main()
