# -*- test-case-name: tests.fuzz.test_regressions -*-
"""
The inputs fuzzing found wardled mishandling, replayed as they were found
(each was a 500, a body that was not a C{Status}, a dropped connection or
an object that could not be reached), with the answer each gets now.
"""

from __future__ import annotations

import json

from tests.fuzz.support import FuzzClient, check, flunders, raw_request


def _create(client: FuzzClient, namespace: str, name: str) -> None:
    reply = check(client.send_json("POST", flunders("v1beta1", namespace), {"metadata": {"name": name}}))
    assert reply.status == 201, reply


def _status(client: FuzzClient, reply_body: bytes) -> dict[str, object]:
    status: dict[str, object] = json.loads(reply_body)
    return status


def test_json_patch_pointer_with_bad_escape(client: FuzzClient, namespace: str) -> None:
    """
    A JSON patch path with an escape other than C{~0}/C{~1}, or without
    its leading slash, was a 500 (the pointer error escaped); it is a 400.
    """
    _create(client, namespace, "target")
    path = flunders("v1beta1", namespace, "target")
    for pointer, message in (("/spec/~2", "Found invalid escape ~2"),
                             ("spec", "Location must start with /")):
        reply = check(client.send_json(
            "PATCH", path, [{"op": "add", "path": pointer, "value": 1}],
            "application/json-patch+json"))
        assert (reply.status, _status(client, reply.body)["message"]) == (400, message)


def test_methods_no_route_takes(client: FuzzClient, namespace: str) -> None:
    """
    C{TRACE}, C{PROPFIND} or any unknown method, and C{OPTIONS /}, were
    500s; they are the 405 C{Status} the resource routes answer.
    """
    for method, path in (("TRACE", "/"), ("PROPFIND", flunders("v1beta1", namespace)),
                         ("FOO", "/healthz"), ("OPTIONS", "/")):
        reply = check(client.send(method, path))
        assert reply.status == 405, reply
        assert _status(client, reply.body)["reason"] == "MethodNotAllowed"


def test_name_with_a_newline(client: FuzzClient, namespace: str) -> None:
    """
    A name with a newline could be created but not read, replaced or
    deleted (no route pattern matched C{%0A}: a 500, later a 404); its URL
    now reaches it.
    """
    _create(client, namespace, "a\nb")
    path = flunders("v1beta1", namespace, "a\nb")
    read = check(client.send("GET", path))
    assert read.status == 200 and json.loads(read.body)["metadata"]["name"] == "a\nb", read
    assert check(client.send("DELETE", path)).status == 200
    missing = check(client.send("GET", "/no\nsuch"))
    assert missing.status == 404


def test_percent_encoded_names(client: FuzzClient, namespace: str) -> None:
    """
    The URL's name was not percent-decoded: C{GET .../a%20b} said C{"a%20b"
    not found} for an existing C{"a b"}, and a PUT of it failed with "does
    not match the name on the URL".  Kubernetes reads the decoded path.
    """
    _create(client, namespace, "a b")
    path = flunders("v1beta1", namespace, "a b")
    assert path.endswith("/a%20b")
    read = check(client.send("GET", path))
    assert read.status == 200, read
    current = json.loads(read.body)
    current["metadata"]["labels"] = {"x": "y"}
    assert check(client.send_json("PUT", path, current)).status == 200
    slash = check(client.send("GET", flunders("v1beta1", namespace) + "/a%2Fb"))
    assert slash.status == 404


def test_path_that_is_not_utf8_once_decoded(client: FuzzClient, namespace: str) -> None:
    """
    C{%ff} in the path got Klein's bare text 400 C{Non-UTF-8 encoding in
    URL.}; it is routed with U+FFFD in its place, as Go shows the name.
    """
    reply = check(raw_request(
        client.server, f"GET {flunders('v1beta1', namespace)}/a%ff HTTP/1.1".encode()))
    assert reply.status == 404
    assert _status(client, reply.body)["details"] == {
        "name": "a\ufffd", "group": "wardle.example.com", "kind": "flunders"}
    assert check(raw_request(client.server, b"GET /%ff%fe HTTP/1.1")).status == 404


def test_nesting_past_the_recursion_limit(client: FuzzClient, namespace: str) -> None:
    """
    Values nested deep enough to exhaust Python's recursion while the
    object was copied were 500s.  YAML aliases multiply depth past what the
    body's own brackets and indentation show, so this is a chain of anchors
    each 90 levels deep around the previous one: 540 levels once expanded.
    """
    lines = []
    for index in range(6):
        inner = f"*a{index - 1}" if index else "1"
        lines.append(f"      a{index}: &a{index} " + "[" * 90 + inner + "]" * 90)
    body = (
        "metadata:\n  name: aliased\n  managedFields:\n  - manager: m\n"
        "    operation: Update\n    apiVersion: wardle.example.com/v1beta1\n"
        "    fieldsType: FieldsV1\n    fieldsV1:\n" + "\n".join(lines) + "\n"
    )
    reply = check(client.send("POST", flunders("v1beta1", namespace),
                              headers={"Content-Type": "application/yaml"}, body=body))
    assert reply.status == 400, reply
    deep = b'{"metadata":{"name":"deep"},"spec":' + b"[" * 5000 + b"]" * 5000 + b"}"
    merge = check(client.send("PATCH", flunders("v1beta1", namespace, "deep"), body=deep,
                              headers={"Content-Type": "application/merge-patch+json"}))
    assert merge.status == 400, merge


def test_header_values_that_are_not_utf8(client: FuzzClient, namespace: str) -> None:
    """
    A C{Content-Type} or C{Accept} with a byte that is not UTF-8 (C{0x80})
    was a 500 (Twisted decodes a header looked up by text name as UTF-8).
    """
    created = check(client.send("POST", flunders("v1beta1", namespace), body=b"{}",
                                headers={"Content-Type": "application/json\x80"}))
    assert created.status == 415, created
    listed = check(client.send("GET", flunders("v1beta1", namespace),
                               headers={"Accept": "\x80"}))
    assert listed.status == 406, listed


def test_content_types_twisted_parsed_as_forms(client: FuzzClient, namespace: str) -> None:
    """
    Twisted parsed POST bodies as forms by their C{Content-Type}: a value
    with a character Python's e-mail parser takes for a line break
    (C{\\x0b}, C{\\x1c}, C{\\x85}) dropped the connection without an answer,
    and a multipart type over a body that is not multipart got a bare 400.
    Both are 415 C{Status}es now.
    """
    path = f"POST {flunders('v1beta1', namespace)} HTTP/1.1".encode()
    for content_type in ("a\x0bb", "a\x1cb", "a\x85b", "multipart/form-data; boundary=x",
                         "multipart/form-data"):
        reply = check(raw_request(client.server, path, {"Content-Type": content_type},
                                  b"--x\r\ngarbage"))
        assert reply.status == 415, (content_type, reply)


def test_apply_with_null_metadata(client: FuzzClient, namespace: str) -> None:
    """
    Server-side apply of C{{"metadata": null}} was a 500.  Creating, it is
    the 400 of a configuration without the URL's name; onto an existing
    object it applies (the name comes from the live object).
    """
    _create(client, namespace, "present")
    for name, code in (("absent", 400), ("present", 200)):
        reply = check(client.send(
            "PATCH", flunders("v1beta1", namespace, name), params={"fieldManager": "fuzz"},
            headers={"Content-Type": "application/apply-patch+yaml"}, body=b'{"metadata": null}'))
        assert reply.status == code, reply


def test_limit_beyond_int64(backend_client: FuzzClient, namespace: str) -> None:
    """
    C{limit=9223372036854775808} went to storage as it was: etcd refused
    it (a 503 "storage is unavailable") and SQLite overflowed (a 500).  It
    is Go's 400 now; the largest int64 still lists.
    """
    path = flunders("v1beta1", namespace)
    _create(backend_client, namespace, "one")
    for limit, code in (("9223372036854775808", 400), ("-9223372036854775809", 400),
                        (" 1", 400), ("9223372036854775807", 200), ("+1", 200)):
        reply = check(backend_client.send("GET", path, params={"limit": limit}))
        assert reply.status == code, (limit, reply)
    too_big = check(backend_client.send("GET", path, params={"limit": "9223372036854775808"}))
    assert _status(backend_client, too_big.body)["message"] == (
        'strconv.ParseInt: parsing "9223372036854775808": value out of range')


def test_delete_options_with_wrong_types(client: FuzzClient, namespace: str) -> None:
    """
    A DeleteOptions body with a field of the wrong type (C{preconditions:
    true}, found as YAML) was a 500; it is the 400 with Go's decode error
    that Kubernetes answers since 1.35.
    """
    _create(client, namespace, "kept")
    for path in (flunders("v1beta1", namespace), flunders("v1beta1", namespace, "kept")):
        for body, message in (
            (b"dryRun: null\npreconditions: true\n", (
                "json: cannot unmarshal bool into Go struct field "
                "DeleteOptions.preconditions of type Preconditions")),
            (b'{"gracePeriodSeconds": "x"}', (
                "json: cannot unmarshal string into Go struct field "
                "DeleteOptions.gracePeriodSeconds of type int64")),
        ):
            content_type = "application/yaml" if body[:1] != b"{" else "application/json"
            reply = check(client.send("DELETE", path, body=body,
                                      headers={"Content-Type": content_type}))
            assert (reply.status, _status(client, reply.body)["message"]) == (400, message)
    assert check(client.send("GET", flunders("v1beta1", namespace, "kept"))).status == 200
