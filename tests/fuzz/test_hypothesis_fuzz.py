# -*- test-case-name: tests.fuzz.test_hypothesis_fuzz -*-
"""
Hypothesis over HTTP against a real server: the parsers behind each part
of a request (selectors, C{limit}/C{continue}, C{resourceVersion} and its
match, names in URLs and bodies, body decoding in each media type,
patches of each type, C{Accept}) get generated input, and every answer
must keep the fuzzing contract (L{tests.fuzz.support.check}); the
C{client} fixtures check that the server is still ready afterwards.

What reaches storage keys (names, continue tokens) runs against both
backends; the rest against the embedded store.
"""

from __future__ import annotations

import json
import urllib.parse
from typing import Any

import pytest
import yaml
from hypothesis import example, given
from hypothesis import strategies as st

from tests.fuzz import strategies as fz
from tests.fuzz.support import (
    GROUP,
    FuzzClient,
    check,
    flunders,
    fuzz_settings,
    raw_request,
)


def seed(client: FuzzClient, namespace: str, count: int = 4) -> int:
    """
    Create C{count} labelled Flunders in C{namespace}; return the
    collection's resourceVersion afterwards.
    """
    for index in range(count):
        body = {"metadata": {"name": f"seed-{index}",
                             "labels": {"i": str(index), "app.example.com/tier": "x"}}}
        reply = client.send_json("POST", flunders("v1beta1", namespace), body)
        assert reply.status == 201, reply
    listed = client.send("GET", flunders("v1beta1", namespace))
    return int(json.loads(listed.body)["metadata"]["resourceVersion"])


@pytest.fixture
def revision(client: FuzzClient, namespace: str) -> int:
    """
    The resourceVersion after seeding C{namespace} with Flunders.
    """
    return seed(client, namespace)


@pytest.fixture
def real_tokens(backend_client: FuzzClient, namespace: str) -> list[str]:
    """
    Continue tokens the server handed out, for one namespace and for all.
    """
    seed(backend_client, namespace)
    tokens = []
    for where in (namespace, None):
        page = backend_client.send("GET", flunders("v1beta1", where), params={"limit": "1"})
        tokens.append(json.loads(page.body)["metadata"]["continue"])
    return tokens


# -- query parameters -----------------------------------------------------------


@fuzz_settings(2)
@given(selector=fz.LABEL_SELECTORS, everywhere=st.booleans(), watch=st.booleans())
@example(selector="a in (", everywhere=False, watch=False)
@example(selector="i in (0,2),app.example.com/tier", everywhere=True, watch=True)
def test_label_selectors(
    client: FuzzClient, namespace: str, revision: int, selector: str, everywhere: bool,
    watch: bool,
) -> None:
    """
    Any C{labelSelector} on a list or a watch.
    """
    params = {"labelSelector": selector, **({"watch": "true"} if watch else {})}
    check(client.send("GET", flunders("v1beta1", None if everywhere else namespace),
                      params=params))


@fuzz_settings(2)
@given(selector=fz.FIELD_SELECTORS, everywhere=st.booleans(), watch=st.booleans())
@example(selector="metadata.name=seed-1,metadata.namespace!=x", everywhere=True, watch=False)
@example(selector="metadata.name=\\", everywhere=False, watch=True)
def test_field_selectors(
    client: FuzzClient, namespace: str, revision: int, selector: str, everywhere: bool,
    watch: bool,
) -> None:
    """
    Any C{fieldSelector} on a list or a watch.
    """
    params = {"fieldSelector": selector, **({"watch": "1"} if watch else {})}
    check(client.send("GET", flunders("v1alpha1", None if everywhere else namespace),
                      params=params))


@fuzz_settings(3)
@given(data=st.data())
def test_limit_and_continue(
    backend_client: FuzzClient, namespace: str, real_tokens: list[str], data: Any
) -> None:
    """
    C{limit} and C{continue}: crafted tokens and mutations of real ones
    (whose C{start} key goes to storage), on each backend.
    """
    real = data.draw(st.sampled_from(real_tokens))
    token = data.draw(st.one_of(fz.CRAFTED_TOKENS, fz.mutated(real), st.just(real)))
    params = {"limit": data.draw(fz.LIMITS), "continue": token}
    if data.draw(st.booleans()):
        params["resourceVersion"] = data.draw(st.sampled_from(["", "0", "1", "abc"]))
    everywhere = data.draw(st.booleans())
    check(backend_client.send("GET", flunders("v1beta1", None if everywhere else namespace),
                              params=params))


@fuzz_settings(3)
@given(data=st.data())
def test_resource_version_and_match(
    client: FuzzClient, namespace: str, revision: int, data: Any
) -> None:
    """
    C{resourceVersion} (odd text, or any revision the store has) with each
    C{resourceVersionMatch}, on get, list and watch, with and without
    C{sendInitialEvents}.
    """
    version = data.draw(st.one_of(fz.ODD_RESOURCE_VERSIONS, st.integers(0, revision).map(str)))
    params = {"resourceVersion": version,
              "resourceVersionMatch": data.draw(fz.RESOURCE_VERSION_MATCHES)}
    verb = data.draw(st.sampled_from(["get", "list", "watch"]))
    if verb == "watch":
        params["watch"] = "true"
        if data.draw(st.booleans()):
            params["timeoutSeconds"] = data.draw(fz.LIMITS)
        if data.draw(st.booleans()):
            params["sendInitialEvents"] = data.draw(fz.BOOLEAN_TEXT)
            params["allowWatchBookmarks"] = data.draw(fz.BOOLEAN_TEXT)
    name = "seed-1" if verb == "get" else ""
    check(client.send("GET", flunders("v1beta1", namespace, name), params=params))


# -- names ------------------------------------------------------------------------


@fuzz_settings(3)
@given(name=fz.NAMES, method=st.sampled_from(["POST", "GET", "PUT", "PATCH", "DELETE"]))
@example(name="a b", method="POST")
@example(name="\ufffd", method="GET")
@example(name="a%2Fb", method="PUT")
def test_names(backend_client: FuzzClient, namespace: str, name: str, method: str) -> None:
    """
    Any name, in a create body and percent-encoded in the URL, on each
    backend; a name that was created can be read back by its URL.
    """
    body = {"apiVersion": "wardle.example.com/v1beta1", "kind": "Flunder",
            "metadata": {"name": name}}
    if method == "POST":
        created = check(backend_client.send_json(
            "POST", flunders("v1beta1", namespace), body))
        if created.status == 201:
            stored = json.loads(created.body)["metadata"]["name"]
            read = check(backend_client.send("GET", flunders("v1beta1", namespace, stored)))
            assert read.status == 200, f"created {stored!r} but GET answered {read.status}"
        return
    path = flunders("v1beta1", namespace, name)
    if method == "PATCH":
        check(backend_client.send("PATCH", path, body=b'{"metadata":{"labels":{"a":"b"}}}',
                                  headers={"Content-Type": "application/merge-patch+json"}))
    elif method == "PUT":
        check(backend_client.send_json("PUT", path, body))
    else:
        check(backend_client.send(method, path))


#: Request-target bytes (RFC 9112: visible ASCII; raw bytes outside it are
#: refused by Twisted's HTTP parser with a bare 400 before wardled sees the
#: request, as Go's net/http refuses them).
_PATH_BYTES = st.binary(max_size=40).map(
    lambda raw: bytes(b for b in raw if 0x20 < b < 0x7F and b not in b"?#")
)
_PERCENT = st.builds(lambda a, b: f"%{a}{b}".encode(), st.sampled_from("0123456789abcdefgzF"),
                     st.sampled_from("0123456789abcdefgzF"))


@fuzz_settings(2)
@given(
    prefix=st.sampled_from([b"/apis/wardle.example.com/v1beta1/namespaces/ns/flunders/",
                            b"/apis/wardle.example.com/v1beta1/namespaces/", b"/apis/",
                            b"/", b"/openapi/v3/", b"/healthz/", b"/apis/wardle.example.com/"]),
    pieces=st.lists(st.one_of(_PATH_BYTES, _PERCENT, st.sampled_from([b"/", b"..", b"//"])),
                    max_size=6),
    method=st.sampled_from([b"GET", b"DELETE", b"PUT", b"OPTIONS", b"TRACE", b"FOO"]),
)
@example(prefix=b"/apis/wardle.example.com/v1beta1/namespaces/ns/flunders/", pieces=[b"%ff"],
         method=b"GET")
@example(prefix=b"/", pieces=[b"%ff%fe"], method=b"GET")
def test_raw_request_targets(
    client: FuzzClient, prefix: bytes, pieces: list[bytes], method: bytes
) -> None:
    """
    Request targets sent byte for byte: bad percent escapes, escapes that
    decode to bytes that are not UTF-8, dot segments, empty segments, odd
    methods.
    """
    target = prefix + b"".join(pieces)
    check(raw_request(client.server, method + b" " + target + b" HTTP/1.1"))


# -- bodies -------------------------------------------------------------------------


def _encode(document: Any, as_yaml: bool) -> tuple[bytes, str]:
    if as_yaml:
        return yaml.safe_dump(document).encode(), "application/yaml"
    return json.dumps(document).encode(), "application/json"


@fuzz_settings(3)
@given(
    version=st.sampled_from(fz.FLUNDER_VERSIONS),
    data=st.data(),
    as_yaml=st.booleans(),
    method=st.sampled_from(["POST", "PUT"]),
    validation=st.sampled_from(["", "Strict", "Warn", "Ignore"]),
)
def test_flunder_bodies(
    client: FuzzClient, namespace: str, version: str, data: Any, as_yaml: bool, method: str,
    validation: str,
) -> None:
    """
    Flunder bodies with the wrong type in any field, JSON or YAML, created
    or replacing one.
    """
    document = data.draw(fz.flunder_bodies(version))
    body, content_type = _encode(document, as_yaml)
    name = "" if method == "POST" else data.draw(fz.NAMES)
    params = {"fieldValidation": validation} if validation else {}
    check(client.send(method, flunders(version, namespace, name), params=params,
                      headers={"Content-Type": content_type}, body=body))


@fuzz_settings(2)
@given(document=fz.FISCHER_BODIES, as_yaml=st.booleans(), name=st.one_of(st.just(""), fz.NAMES))
def test_fischer_bodies(client: FuzzClient, document: Any, as_yaml: bool, name: str) -> None:
    """
    Fischer bodies (cluster-scoped) with the wrong type in any field.
    """
    body, content_type = _encode(document, as_yaml)
    path = f"{GROUP}/v1alpha1/fischers" + (f"/{urllib.parse.quote(name, safe='')}" if name else "")
    check(client.send("PUT" if name else "POST", path,
                      headers={"Content-Type": content_type}, body=body))


@fuzz_settings(2)
@given(
    document=fz.JSON_VALUES,
    method=st.sampled_from(["POST", "PUT", "DELETE"]),
    collection=st.booleans(),
)
@example(document=10**400, method="POST", collection=True)
@example(document={"metadata": {"name": "x", "generation": 2**64}}, method="POST",
         collection=True)
@example(document={"gracePeriodSeconds": 1.5e300, "propagationPolicy": None}, method="DELETE",
         collection=False)
def test_any_json_value_as_body(
    client: FuzzClient, namespace: str, revision: int, document: Any, method: str,
    collection: bool,
) -> None:
    """
    Any JSON value (huge integers and floats included) as a create,
    update or delete body.
    """
    name = "" if collection and method != "PUT" else "seed-0"
    check(client.send_json(method, flunders("v1beta1", namespace, name), document))


@fuzz_settings(2)
@given(
    garbage=fz.GARBAGE,
    content_type=fz.CONTENT_TYPES,
    method=st.sampled_from(["POST", "PUT", "PATCH", "DELETE"]),
)
@example(garbage=b"k8s\x00\x0a\x02hi", content_type="application/vnd.kubernetes.protobuf",
         method="POST")
@example(garbage=b'{"metadata":{"name":"\xff"}}', content_type="application/json",
         method="POST")
def test_garbage_bodies(
    client: FuzzClient, namespace: str, garbage: bytes, content_type: str, method: str
) -> None:
    """
    Random bytes, invalid UTF-8 and protobuf, under any C{Content-Type}.
    """
    name = "" if method == "POST" else "garbage"
    headers = {"Content-Type": content_type} if content_type else {}
    check(client.send(method, flunders("v1beta1", namespace, name), headers=headers,
                      body=garbage))


@fuzz_settings(2)
@given(
    depth=st.one_of(st.integers(1, 3000), st.sampled_from([99, 100, 101, 480, 999, 1000, 1001])),
    style=st.sampled_from(fz.NESTING_STYLES),
    where=st.sampled_from(["spec", "fieldsV1", "top"]),
    method=st.sampled_from(["POST", "PUT", "merge-patch", "json-patch", "apply"]),
)
@example(depth=600, style="json-object", where="fieldsV1", method="POST")
@example(depth=2000, style="json-array", where="top", method="merge-patch")
@example(depth=500, style="json-object", where="spec", method="json-patch")
def test_deep_nesting(
    client: FuzzClient, namespace: str, depth: int, style: str, where: str, method: str
) -> None:
    """
    Bodies nested up to 3000 levels, in an unknown field, in
    C{managedFields[0].fieldsV1} (kept as it is), or as the whole body.
    """
    value = fz.nested(depth, style)
    is_yaml = style.startswith("yaml")
    if where == "top":
        body = value
    elif is_yaml and style == "yaml-block":
        body = b"metadata:\n  name: deep\nspec:\n" + b"\n".join(
            b"  " + line for line in value.splitlines()) + b"\n"
    elif where == "spec":
        body = b'{"metadata":{"name":"deep"},"spec":{"x":' + value + b"}}"
    else:
        body = (b'{"metadata":{"name":"deep","managedFields":[{"manager":"m","operation":'
                b'"Update","apiVersion":"wardle.example.com/v1beta1","fieldsType":"FieldsV1",'
                b'"fieldsV1":' + value + b"}]}}")
    content_type = "application/yaml" if is_yaml else "application/json"
    path, params = flunders("v1beta1", namespace), {}
    if method == "json-patch":
        body = b'[{"op":"add","path":"/spec/x","value":' + body + b"}]"
        content_type = "application/json-patch+json"
    if method != "POST":
        path = flunders("v1beta1", namespace, "deep")
    if method == "merge-patch":
        content_type = "application/merge-patch+json"
    elif method == "apply":
        content_type, params = "application/apply-patch+yaml", {"fieldManager": "fuzz"}
    http_method = {"POST": "POST", "PUT": "PUT"}.get(method, "PATCH")
    check(client.send(http_method, path, params=params, headers={"Content-Type": content_type},
                      body=body))


@fuzz_settings(1)
@given(
    levels=st.integers(1, 12),
    fanout=st.integers(1, 12),
    media=st.sampled_from(["application/yaml", "application/apply-patch+yaml",
                           "application/merge-patch+json"]),
)
@example(levels=9, fanout=9, media="application/yaml")
@example(levels=9, fanout=9, media="application/apply-patch+yaml")
@example(levels=9, fanout=9, media="application/merge-patch+json")
def test_yaml_alias_bombs(
    client: FuzzClient, namespace: str, levels: int, fanout: int, media: str
) -> None:
    """
    YAML anchors and aliases: a billion laughs is refused (4xx) within
    seconds, as a create, an apply and a merge patch.
    """
    name = f"bomb-{levels}-{fanout}"
    body = fz.alias_bomb(levels, fanout, name)
    if media == "application/yaml":
        path, method, params = flunders("v1beta1", namespace), "POST", {}
    else:
        path, method = flunders("v1beta1", namespace, name), "PATCH"
        params = {"fieldManager": "fuzz"} if "apply" in media else {}
    reply = check(client.send(method, path, params=params, headers={"Content-Type": media},
                              body=body))
    assert reply.seconds < 5, f"{reply.request} took {reply.seconds:.1f} s"
    if fanout**levels > 10**7 and media != "application/merge-patch+json":
        assert 400 <= reply.status < 500, f"a {fanout}**{levels} bomb got {reply.status}"


# -- patches ------------------------------------------------------------------------


def _ensure_patch_target(client: FuzzClient, namespace: str) -> str:
    path = flunders("v1beta1", namespace, "target")
    if check(client.send("GET", path)).status == 404:
        check(client.send_json("POST", flunders("v1beta1", namespace),
                               {"metadata": {"name": "target", "labels": {"a": "b"}}}))
    return path


@fuzz_settings(3)
@given(patch=fz.JSON_PATCHES, dry_run=st.booleans())
@example(patch=[{"op": "add", "path": "/spec/~2", "value": 1}], dry_run=False)
@example(patch=[{"op": "move", "from": "/metadata", "path": "/metadata/x"}], dry_run=False)
@example(patch=[{"op": "replace", "path": "", "value": []}], dry_run=True)
def test_json_patches(client: FuzzClient, namespace: str, patch: Any, dry_run: bool) -> None:
    """
    JSON patches: random operations at random (and malformed) pointers.
    """
    path = _ensure_patch_target(client, namespace)
    check(client.send_json("PATCH", path, patch, "application/json-patch+json",
                           params={"dryRun": "All"} if dry_run else None))


@fuzz_settings(2)
@given(
    patch=st.one_of(fz.JSON_VALUES, fz.flunder_bodies("v1beta1")),
    strategic=st.booleans(),
)
def test_merge_patches(client: FuzzClient, namespace: str, patch: Any, strategic: bool) -> None:
    """
    Merge and strategic merge patches: any JSON value, or a Flunder with
    wrong field types.
    """
    path = _ensure_patch_target(client, namespace)
    kind = "strategic-merge-patch" if strategic else "merge-patch"
    check(client.send_json("PATCH", path, patch, f"application/{kind}+json"))


@fuzz_settings(2)
@given(
    document=fz.flunder_bodies("v1beta1"),
    manager=st.one_of(st.just("fuzz"), fz.ANY_TEXT, st.text(min_size=120, max_size=140)),
    force=st.one_of(st.none(), fz.BOOLEAN_TEXT),
    as_yaml=st.booleans(),
    existing=st.booleans(),
)
def test_apply_patches(
    client: FuzzClient, namespace: str, document: Any, manager: str, force: str | None,
    as_yaml: bool, existing: bool,
) -> None:
    """
    Server-side apply of Flunders with wrong field types, any
    C{fieldManager} and C{force}, to an existing object or a new one.
    """
    path = _ensure_patch_target(client, namespace) if existing else flunders(
        "v1beta1", namespace, "applied")
    body, _ = _encode(document, as_yaml)
    params = {"fieldManager": manager, **({"force": force} if force is not None else {})}
    check(client.send("PATCH", path, params=params,
                      headers={"Content-Type": "application/apply-patch+yaml"}, body=body))


# -- negotiation --------------------------------------------------------------------


@fuzz_settings(2)
@given(
    accept=st.one_of(
        st.text(max_size=60),
        st.builds(
            lambda t, params: t + "".join(f";{k}={v}" for k, v in params),
            st.sampled_from(["application/json", "application/yaml", "*/*", "application/*",
                             "application/vnd.kubernetes.protobuf", "text/plain"]),
            st.lists(st.tuples(st.sampled_from(["as", "v", "g", "q", "includeObject",
                                                "stream", "charset"]),
                               st.sampled_from(["Table", "v1", "v1beta1", "meta.k8s.io",
                                                "0.5", "x", "watch", "Object", "",
                                                "PartialObjectMetadata",
                                                "PartialObjectMetadataList"])),
                     max_size=4),
        ),
    ),
    path=st.sampled_from(["list", "get", "watch", "/apis", "/openapi/v2", "/openapi/v3",
                          "/version", "/apis/wardle.example.com/v1beta1"]),
)
def test_accept_headers(
    client: FuzzClient, namespace: str, revision: int, accept: str, path: str
) -> None:
    """
    Any C{Accept} header, on objects, lists, watches, discovery and the
    OpenAPI documents.
    """
    params: dict[str, str] = {}
    if path in ("list", "get", "watch"):
        params = {"watch": "1"} if path == "watch" else {}
        path = flunders("v1beta1", namespace, "seed-0" if path == "get" else "")
    check(client.send("GET", path, params=params, headers={"Accept": accept}))
