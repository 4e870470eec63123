# -*- test-case-name: tests.test_kubestandin -*-
"""
Tests for L{tests.kubestandin}, the stand-in for kube-apiserver that
wardled's integration tests talk to instead of a real cluster.

One stand-in process serves the whole module; every test talks to it over
real HTTPS with Python's C{http.client}, as wardled's own clients would, and
puts back whatever it changed (tokens, rules, availability).
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs
import pytest
import yaml

from tests.kubestandin import API_AUDIENCES, KubeStandIn, StandInError

TOKEN_REVIEWS = "/apis/authentication.k8s.io/v1/tokenreviews"
ACCESS_REVIEWS = "/apis/authorization.k8s.io/v1/subjectaccessreviews"
AUTH_CONFIGMAP = (
    "/api/v1/namespaces/kube-system/configmaps/extension-apiserver-authentication"
)
NAMESPACES = "/api/v1/namespaces"
READ_TIMEOUT = 5.0


@pytest.fixture(scope="module")
def standin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeStandIn]:
    """
    One stand-in kube-apiserver for the module.
    """
    server = KubeStandIn.start(str(tmp_path_factory.mktemp("kubestandin")))
    try:
        yield server
    finally:
        server.stop()


@attrs.frozen
class Answer:
    """
    A response read whole: status, headers (lower-case names), parsed body.
    """

    status: int
    headers: Mapping[str, str]
    body: Any


def _call(
    standin: KubeStandIn,
    method: str,
    path: str,
    body: Any = None,
    client_certificate: bool = True,
    headers: Mapping[str, str] | None = None,
) -> Answer:
    connection = standin.connection(client_certificate, READ_TIMEOUT)
    try:
        payload = body
        if body is not None and not isinstance(body, bytes):
            payload = json.dumps(body).encode()
        connection.request(method, path, body=payload, headers=dict(headers or {}))
        response = connection.getresponse()
        raw = response.read()
        names = {k.lower(): v for k, v in response.getheaders()}
        return Answer(response.status, names, json.loads(raw) if raw else None)
    finally:
        connection.close()


class Watch:
    """
    An open watch response, read event by event.
    """

    def __init__(self, standin: KubeStandIn, path: str) -> None:
        self.connection = standin.connection(timeout=READ_TIMEOUT)
        self.connection.request("GET", path)
        self.response = self.connection.getresponse()

    def event(self) -> Any:
        """
        The next event, or C{None} when the stream ended.
        """
        line = self.response.readline()
        return json.loads(line) if line.strip() else None

    def close(self) -> None:
        self.connection.close()


@pytest.fixture
def watches() -> Iterator[list[Watch]]:
    """
    Watches opened by a test (closed after it).
    """
    opened: list[Watch] = []
    yield opened
    for watch in opened:
        watch.close()


def _open(standin: KubeStandIn, watches: list[Watch], query: str) -> Watch:
    watch = Watch(standin, f"{NAMESPACES}?watch=1&{query}")
    watches.append(watch)
    return watch


def _status(code: int, reason: str, message: str, **details: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
    }
    if details:
        body["details"] = details
    body["code"] = code
    return body


# --- start-up -------------------------------------------------------------------


def test_kubeconfig_points_at_the_standin(standin: KubeStandIn) -> None:
    """
    The kubeconfig names the stand-in's URL, its CA and the CN=wardled client
    certificate, all of which exist.
    """
    document = yaml.safe_load(Path(standin.kubeconfig).read_text())
    cluster = document["clusters"][0]["cluster"]
    user = document["users"][0]["user"]
    assert cluster["server"] == standin.url == f"https://127.0.0.1:{standin.port}"
    assert cluster["certificate-authority"] == os.path.abspath(standin.ca_file)
    assert os.path.exists(user["client-certificate"])
    assert os.path.exists(user["client-key"])


# --- TokenReview -------------------------------------------------------------


def _token_review(standin: KubeStandIn, spec: dict[str, Any]) -> Answer:
    body = {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenReview",
        "spec": spec,
    }
    return _call(standin, "POST", TOKEN_REVIEWS, body)


@pytest.fixture
def tokens(standin: KubeStandIn) -> Iterator[None]:
    """
    Known tokens: C{alice-token} and C{bound-token} (audience C{wardle}).
    """
    standin.set_tokens(
        {
            "alice-token": {
                "username": "alice",
                "uid": "42",
                "groups": ["devs"],
                "extra": {"scopes": ["read"]},
            },
            "bound-token": {"username": "bob", "audiences": ["wardle"]},
        }
    )
    yield
    standin.set_tokens({})


@pytest.mark.usefixtures("tokens")
def test_token_review_known(standin: KubeStandIn) -> None:
    """
    A known token is authenticated as its user, with
    C{system:authenticated} added and the apiserver's audiences.
    """
    answer = _token_review(standin, {"token": "alice-token"})
    assert answer.status == 201
    assert answer.body == {
        "kind": "TokenReview",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {"creationTimestamp": None},
        "spec": {"token": "alice-token"},
        "status": {
            "authenticated": True,
            "user": {
                "username": "alice",
                "uid": "42",
                "groups": ["devs", "system:authenticated"],
                "extra": {"scopes": ["read"]},
            },
            "audiences": API_AUDIENCES,
        },
    }


@pytest.mark.usefixtures("tokens")
def test_token_review_unknown(standin: KubeStandIn) -> None:
    """
    An unknown token is not authenticated: C{authenticated} is left out, the
    user is empty and the error is kube-apiserver's.
    """
    answer = _token_review(standin, {"token": "nobody"})
    assert answer.status == 201
    assert answer.body["status"] == {"user": {}, "error": "invalid bearer token"}


@pytest.mark.usefixtures("tokens")
def test_token_review_audiences(standin: KubeStandIn) -> None:
    """
    A token bound to audiences is valid only for them; the status names the
    ones that matched.
    """
    matched = _token_review(
        standin, {"token": "bound-token", "audiences": ["x", "wardle"]}
    )
    assert matched.body["spec"]["audiences"] == ["x", "wardle"]
    assert matched.body["status"]["authenticated"] is True
    assert matched.body["status"]["audiences"] == ["wardle"]
    missed = _token_review(standin, {"token": "bound-token", "audiences": ["x"]})
    assert "authenticated" not in missed.body["status"]
    assert missed.body["status"]["error"].startswith("[invalid bearer token, ")


def test_token_review_needs_a_token(standin: KubeStandIn) -> None:
    """
    An empty token is a 400 Status.
    """
    answer = _token_review(standin, {})
    assert answer.status == 400
    assert answer.body == _status(
        400, "BadRequest", "token is required for TokenReview in authentication"
    )


# --- SubjectAccessReview -----------------------------------------------------

RULES: list[dict[str, Any]] = [
    {
        "user": "alice",
        "verbs": ["get"],
        "groups": ["wardle.example.com"],
        "resources": ["flunders"],
        "namespaces": ["ns1"],
    },
    {"group": "admins"},
    {"user": "bob", "verbs": ["get"], "nonResourceURLs": ["/healthz", "/metrics/*"]},
    {"user": "carol", "groups": ["*"], "resources": ["*"], "names": ["x"]},
]


def _resource(verb: str, namespace: str = "ns1", **more: str) -> dict[str, str]:
    attributes = {
        "namespace": namespace,
        "verb": verb,
        "group": "wardle.example.com",
        "version": "v1alpha1",
        "resource": "flunders",
    }
    attributes.update(more)
    return {key: value for key, value in attributes.items() if value}


@pytest.fixture
def rules(standin: KubeStandIn) -> Iterator[None]:
    standin.set_access_rules(RULES)
    yield
    standin.set_access_rules([])


@pytest.mark.usefixtures("rules")
@pytest.mark.parametrize(
    ("subject", "attributes", "rule"),
    [
        ({"user": "alice"}, {"resourceAttributes": _resource("get")}, 0),
        ({"user": "alice"}, {"resourceAttributes": _resource("get", "ns2")}, None),
        ({"user": "alice"}, {"resourceAttributes": _resource("list")}, None),
        ({"user": "alice"}, {"resourceAttributes": _resource("get", group="")}, None),
        (
            {"user": "alice", "groups": ["devs"]},
            {"nonResourceAttributes": {"path": "/healthz", "verb": "get"}},
            None,
        ),
        (
            {"user": "dave", "groups": ["x", "admins"]},
            {"resourceAttributes": _resource("delete", "")},
            1,
        ),
        (
            {"user": "dave", "groups": ["admins"]},
            {"nonResourceAttributes": {"path": "/x", "verb": "put"}},
            1,
        ),
        ({"groups": ["admins"]}, {"resourceAttributes": _resource("get")}, 1),
        (
            {"user": "bob"},
            {"nonResourceAttributes": {"path": "/healthz", "verb": "get"}},
            2,
        ),
        (
            {"user": "bob"},
            {"nonResourceAttributes": {"path": "/metrics/slis", "verb": "get"}},
            2,
        ),
        (
            {"user": "bob"},
            {"nonResourceAttributes": {"path": "/metricsx", "verb": "get"}},
            None,
        ),
        (
            {"user": "bob"},
            {"nonResourceAttributes": {"path": "/healthz", "verb": "post"}},
            None,
        ),
        ({"user": "bob"}, {"resourceAttributes": _resource("get")}, None),
        ({"user": "carol"}, {"resourceAttributes": _resource("delete", name="x")}, 3),
        (
            {"user": "carol"},
            {"resourceAttributes": _resource("delete", name="y")},
            None,
        ),
        ({"user": "carol"}, {"resourceAttributes": _resource("list")}, None),
        (
            {"user": "carol"},
            {"nonResourceAttributes": {"path": "/x", "verb": "get"}},
            None,
        ),
    ],
)
def test_access_review(
    standin: KubeStandIn,
    subject: dict[str, Any],
    attributes: dict[str, Any],
    rule: int | None,
) -> None:
    """
    A review is allowed by the first rule that matches user or group, verb,
    API group, resource, namespace and name (or non-resource path), and
    denied when none does; the spec is echoed.
    """
    spec = {**attributes, **subject, "uid": "u1", "extra": {"k": ["v"]}}
    body = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": spec,
    }
    answer = _call(standin, "POST", ACCESS_REVIEWS, body)
    assert answer.status == 201
    assert answer.body["kind"] == "SubjectAccessReview"
    assert answer.body["apiVersion"] == "authorization.k8s.io/v1"
    assert answer.body["spec"] == spec
    if rule is None:
        expected = {"allowed": False, "reason": "no stand-in rule matches"}
    else:
        expected = {"allowed": True, "reason": f"allowed by stand-in rule {rule}"}
    assert answer.body["status"] == expected


def test_access_review_invalid(standin: KubeStandIn) -> None:
    """
    A spec without attributes and subject gets kube-apiserver's 422; a body
    that is not JSON gets 400.
    """
    answer = _call(standin, "POST", ACCESS_REVIEWS, {"spec": {}})
    assert answer.status == 422
    assert answer.body["reason"] == "Invalid"
    assert answer.body["message"] == (
        '.authorization.k8s.io "" is invalid: ['
        "spec.resourceAttributes: Invalid value: null: exactly one of "
        "nonResourceAttributes or resourceAttributes must be specified, "
        'spec.user: Invalid value: "": at least one of user or group must be '
        "specified]"
    )
    assert answer.body["details"]["group"] == "authorization.k8s.io"
    malformed = _call(standin, "POST", ACCESS_REVIEWS, b"{not json")
    assert malformed.status == 400
    assert malformed.body["reason"] == "BadRequest"


# --- the authentication ConfigMap --------------------------------------------


def test_configmap(standin: KubeStandIn) -> None:
    """
    The ConfigMap is served with the data the test set, listed by field
    selector, and is 404 once removed.
    """
    standin.set_configmap(
        {"client-ca-file": "PEM", "requestheader-allowed-names": "[]"}
    )
    answer = _call(standin, "GET", AUTH_CONFIGMAP)
    assert answer.status == 200
    assert answer.body["kind"] == "ConfigMap"
    assert answer.body["apiVersion"] == "v1"
    metadata = answer.body["metadata"]
    assert metadata["name"] == "extension-apiserver-authentication"
    assert metadata["namespace"] == "kube-system"
    assert metadata["uid"] and metadata["resourceVersion"].isdigit()
    assert answer.body["data"] == {
        "client-ca-file": "PEM",
        "requestheader-allowed-names": "[]",
    }
    listed = _call(
        standin,
        "GET",
        "/api/v1/namespaces/kube-system/configmaps"
        "?fieldSelector=metadata.name%3Dextension-apiserver-authentication",
    )
    assert listed.body["kind"] == "ConfigMapList"
    assert [i["metadata"]["name"] for i in listed.body["items"]] == [
        "extension-apiserver-authentication"
    ]
    standin.set_configmap(None)
    missing = _call(standin, "GET", AUTH_CONFIGMAP)
    assert missing.status == 404
    assert missing.body == _status(
        404,
        "NotFound",
        'configmaps "extension-apiserver-authentication" not found',
        name="extension-apiserver-authentication",
        kind="configmaps",
    )


# --- namespaces --------------------------------------------------------------


def test_namespace_get(standin: KubeStandIn) -> None:
    """
    An existing namespace is served as a Namespace; a missing one is
    kube-apiserver's 404.
    """
    answer = _call(standin, "GET", f"{NAMESPACES}/kube-system")
    assert answer.status == 200
    assert answer.body["kind"] == "Namespace"
    assert answer.body["metadata"]["name"] == "kube-system"
    assert answer.body["spec"] == {"finalizers": ["kubernetes"]}
    assert answer.body["status"] == {"phase": "Active"}
    missing = _call(standin, "GET", f"{NAMESPACES}/absent")
    assert missing.status == 404
    assert missing.body == _status(
        404,
        "NotFound",
        'namespaces "absent" not found',
        name="absent",
        kind="namespaces",
    )


def test_namespace_list_and_terminating(standin: KubeStandIn) -> None:
    """
    The list holds the initial namespaces and new ones, with the current
    resource version; a Terminating namespace has a deletionTimestamp.
    """
    standin.set_namespace("list-1", "Terminating")
    answer = _call(standin, "GET", NAMESPACES)
    assert answer.body["kind"] == "NamespaceList"
    assert answer.body["metadata"]["resourceVersion"] == standin.resource_version()
    names = [item["metadata"]["name"] for item in answer.body["items"]]
    assert {"default", "kube-system", "kube-public", "list-1"} <= set(names)
    assert names == sorted(names)
    terminating = _call(standin, "GET", f"{NAMESPACES}/list-1").body
    assert terminating["status"] == {"phase": "Terminating"}
    assert "deletionTimestamp" in terminating["metadata"]
    selected = _call(
        standin, "GET", f"{NAMESPACES}?fieldSelector=status.phase%3DTerminating"
    )
    assert "list-1" in [i["metadata"]["name"] for i in selected.body["items"]]
    assert "default" not in [i["metadata"]["name"] for i in selected.body["items"]]


def test_watch_sees_changes(standin: KubeStandIn, watches: list[Watch]) -> None:
    """
    A watch from the current resource version streams ADDED, MODIFIED and
    DELETED as the test changes a namespace, with increasing versions.
    """
    watch = _open(standin, watches, f"resourceVersion={standin.resource_version()}")
    assert watch.response.status == 200
    assert watch.response.getheader("Content-Type") == "application/json"
    assert watch.response.getheader("Transfer-Encoding") == "chunked"
    standin.set_namespace("watch-1")
    standin.set_namespace("watch-1", "Terminating")
    standin.delete_namespace("watch-1")
    events = [watch.event() for _ in range(3)]
    assert [e["type"] for e in events] == ["ADDED", "MODIFIED", "DELETED"]
    assert {e["object"]["metadata"]["name"] for e in events} == {"watch-1"}
    assert events[0]["object"]["kind"] == "Namespace"
    assert events[1]["object"]["status"]["phase"] == "Terminating"
    versions = [int(e["object"]["metadata"]["resourceVersion"]) for e in events]
    assert versions == sorted(set(versions))


def test_watch_replays_missed_events(
    standin: KubeStandIn, watches: list[Watch]
) -> None:
    """
    A watch from an older resource version first gets what it missed; a
    field selector keeps other namespaces out.
    """
    start = standin.resource_version()
    standin.set_namespace("replay-other")
    standin.set_namespace("replay-1")
    watch = _open(
        standin,
        watches,
        f"resourceVersion={start}&fieldSelector=metadata.name%3Dreplay-1",
    )
    event = watch.event()
    assert event["type"] == "ADDED"
    assert event["object"]["metadata"]["name"] == "replay-1"


def test_watch_timeout_ends_stream(standin: KubeStandIn, watches: list[Watch]) -> None:
    """
    C{timeoutSeconds} ends the stream cleanly.
    """
    watch = _open(
        standin,
        watches,
        f"resourceVersion={standin.resource_version()}&timeoutSeconds=1",
    )
    assert watch.event() is None


def test_watch_too_old(standin: KubeStandIn, watches: list[Watch]) -> None:
    """
    A watch from a version the history no longer holds gets 200, one ERROR
    event with a 410 Expired Status, and the end of the stream.
    """
    old = standin.resource_version()
    standin.set_namespace("old-1")
    standin.compact()
    watch = _open(standin, watches, f"resourceVersion={old}")
    assert watch.response.status == 200
    event = watch.event()
    assert event["type"] == "ERROR"
    assert event["object"]["code"] == 410
    assert event["object"]["reason"] == "Expired"
    assert event["object"]["message"].startswith(f"too old resource version: {old} (")
    assert watch.event() is None


def test_watch_bookmark(standin: KubeStandIn, watches: list[Watch]) -> None:
    """
    A watch that allows bookmarks gets a BOOKMARK with the current version
    when the test sends one.
    """
    current = standin.resource_version()
    watch = _open(
        standin, watches, f"resourceVersion={current}&allowWatchBookmarks=true"
    )
    standin.send_bookmark()
    event = watch.event()
    assert event["type"] == "BOOKMARK"
    assert event["object"]["metadata"]["resourceVersion"] == current


def test_watch_from_zero_lists_first(
    standin: KubeStandIn, watches: list[Watch]
) -> None:
    """
    A watch without a resource version starts with ADDED for every
    existing namespace.
    """
    watch = _open(standin, watches, "fieldSelector=metadata.name%3Ddefault")
    event = watch.event()
    assert (event["type"], event["object"]["metadata"]["name"]) == ("ADDED", "default")


# --- availability, authentication, recording ---------------------------------


def test_unavailable(standin: KubeStandIn, watches: list[Watch]) -> None:
    """
    Unavailable: open watches end and every kube request gets 503; control
    still works, and availability comes back.
    """
    watch = _open(standin, watches, f"resourceVersion={standin.resource_version()}")
    standin.set_available(False)
    try:
        assert watch.event() is None
        answer = _call(standin, "GET", f"{NAMESPACES}/default")
        assert answer.status == 503
        assert answer.body["reason"] == "ServiceUnavailable"
        assert answer.body["code"] == 503
        assert (
            _call(standin, "POST", TOKEN_REVIEWS, {"spec": {"token": "t"}}).status
            == 503
        )
    finally:
        standin.set_available(True)
    assert _call(standin, "GET", f"{NAMESPACES}/default").status == 200


def test_calls_recorded_and_reset(standin: KubeStandIn) -> None:
    """
    Kube requests are recorded with kind, method, path, query, lower-case
    headers, body and caller; control requests are not; reset forgets.
    """
    standin.reset_calls()
    _call(standin, "GET", f"{NAMESPACES}/default", headers={"X-Trace": "1"})
    _token_review(standin, {"token": "t"})
    _call(standin, "GET", f"{NAMESPACES}?limit=5")
    calls = standin.calls()
    assert [c["kind"] for c in calls] == [
        "namespace-get",
        "tokenreview",
        "namespace-list",
    ]
    first = calls[0]
    assert (first["method"], first["path"]) == ("GET", "/api/v1/namespaces/default")
    assert first["headers"]["x-trace"] == "1"
    assert first["user"] == "wardled"
    assert first["body"] is None
    assert calls[1]["body"]["spec"] == {"token": "t"}
    assert calls[2]["query"] == {"limit": "5"}
    assert [c["path"] for c in standin.calls("tokenreview")] == [TOKEN_REVIEWS]
    standin.reset_calls()
    assert standin.calls() == []


@pytest.mark.usefixtures("tokens")
def test_authentication(standin: KubeStandIn) -> None:
    """
    Without a client certificate a request needs a known bearer token;
    otherwise it gets kube-apiserver's 401 (and is still recorded).
    """
    standin.reset_calls()
    anonymous = _call(standin, "GET", NAMESPACES, client_certificate=False)
    assert anonymous.status == 401
    assert anonymous.body == _status(401, "Unauthorized", "Unauthorized")
    bearer = {"Authorization": "Bearer alice-token"}
    answer = _call(standin, "GET", NAMESPACES, client_certificate=False, headers=bearer)
    assert answer.status == 200
    wrong = {"Authorization": "Bearer nope"}
    assert (
        _call(
            standin, "GET", NAMESPACES, client_certificate=False, headers=wrong
        ).status
        == 401
    )
    assert [c["user"] for c in standin.calls()] == [None, "alice", None]
    control = standin.connection(client_certificate=False)
    try:
        control.request("DELETE", "/standin/calls")
        assert control.getresponse().status == 401
    finally:
        control.close()


def test_unknown_paths(standin: KubeStandIn) -> None:
    """
    Paths the stand-in does not serve get kube-apiserver's 404 Status;
    methods it does not serve get 405.
    """
    answer = _call(standin, "GET", "/api/v1/pods")
    assert answer.status == 404
    assert answer.body == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": "the server could not find the requested resource",
        "reason": "NotFound",
        "details": {},
        "code": 404,
    }
    assert _call(standin, "DELETE", f"{NAMESPACES}/default").status == 405
    assert _call(standin, "GET", TOKEN_REVIEWS).status == 405


def test_control_errors(standin: KubeStandIn) -> None:
    """
    Control requests the stand-in cannot honour raise L{StandInError}.
    """
    with pytest.raises(StandInError):
        standin.delete_namespace("never-was")
    with pytest.raises(StandInError):
        standin.set_access_rules([{"verb": ["get"]}])
    with pytest.raises(StandInError):
        standin.set_namespace("bad-phase", "Gone")


def test_pause_and_resume(standin: KubeStandIn) -> None:
    """
    A paused stand-in accepts connections but answers nothing; resumed, it
    answers again.
    """
    standin.pause()
    try:
        connection = standin.connection(timeout=0.5)
        with pytest.raises((socket.timeout, TimeoutError)):
            connection.request("GET", f"{NAMESPACES}/default")
            connection.getresponse()
        connection.close()
    finally:
        standin.resume()
    assert _call(standin, "GET", f"{NAMESPACES}/default").status == 200
