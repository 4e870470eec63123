# -*- test-case-name: tests.fuzz.test_hypothesis_fuzz -*-
"""
Hypothesis strategies for what clients put in requests: label and field
selectors (random text and text that follows the grammar closely enough to
get deep into the parsers), continue tokens, resourceVersions, object
names, bodies (right and wrong types per field, huge numbers, deep
nesting, YAML alias bombs, garbage bytes) and patches of each type.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from hypothesis import strategies as st

# -- small pieces -------------------------------------------------------------

_DNS_LABEL = st.from_regex(r"\A[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?\Z")
_LABEL_NAME = st.from_regex(r"\A[A-Za-z0-9]([A-Za-z0-9_.-]{0,10}[A-Za-z0-9])?\Z")
_NASTY_TEXT = st.sampled_from(
    ["", " ", "\x00", "\n", "\t", "\u00e9", "\ufffd", "\U0001f600", "\\", "%", "%2F",
     "'", '"', "(", ")", ",", "!", "=", "==", "!=", ">", "<", "~", "/", "..", "."]
)
#: Any text, now and then with characters that parsers treat specially.
ANY_TEXT = st.one_of(st.text(max_size=40), _NASTY_TEXT)

_LABEL_KEYS = st.one_of(
    _LABEL_NAME,
    st.builds(lambda p, n: f"{p}.example.com/{n}", _DNS_LABEL, _LABEL_NAME),
    ANY_TEXT,
    st.just("a" * 70),
)
_LABEL_VALUES = st.one_of(_LABEL_NAME, st.just(""), ANY_TEXT, st.just("v" * 70))
_SPACE = st.sampled_from(["", " ", "  ", "\t"])


def _join(parts: list[str], separators: list[str]) -> str:
    text = parts[0] if parts else ""
    for part, separator in zip(parts[1:], separators, strict=False):
        text += separator + part
    return text


def _requirement() -> st.SearchStrategy[str]:
    equality = st.builds(
        lambda k, s1, op, s2, v: f"{k}{s1}{op}{s2}{v}",
        _LABEL_KEYS, _SPACE, st.sampled_from(["=", "==", "!=", "=!", "==="]), _SPACE,
        _LABEL_VALUES,
    )
    sets = st.builds(
        lambda k, op, values, s: f"{k} {op}{s}({','.join(values)})",
        _LABEL_KEYS, st.sampled_from(["in", "notin", "In", "in in"]),
        st.lists(_LABEL_VALUES, max_size=4), _SPACE,
    )
    existence = st.builds(lambda bang, k: f"{bang}{k}", st.sampled_from(["", "!", "!!"]),
                          _LABEL_KEYS)
    ordering = st.builds(
        lambda k, op, v: f"{k}{op}{v}", _LABEL_KEYS, st.sampled_from([">", "<", ">=", "<="]),
        st.one_of(st.integers(-(2**70), 2**70).map(str), _LABEL_VALUES),
    )
    return st.one_of(equality, sets, existence, ordering)


#: Label selectors: random text, and lists of requirements close to the
#: grammar (C{a=b}, C{a in (x,y)}, C{!a}, C{a>3}) with stray separators.
LABEL_SELECTORS = st.one_of(
    st.text(max_size=80),
    st.builds(
        _join,
        st.lists(_requirement(), min_size=1, max_size=5),
        st.lists(st.sampled_from([",", ", ", ",,", " ", ";"]), max_size=4),
    ),
)

_FIELD_PATHS = st.one_of(
    st.sampled_from(["metadata.name", "metadata.namespace", "spec.referenceType",
                     "status", "metadata", "", "metadata.name.x"]),
    ANY_TEXT,
)
_FIELD_VALUES = st.one_of(
    _DNS_LABEL, ANY_TEXT,
    st.builds(lambda a, b: f"{a}\\{b}", _DNS_LABEL, st.sampled_from([",", "=", "!", "\\", "x", ""])),
)

#: Field selectors: random text, and C{path op value} lists with escapes.
FIELD_SELECTORS = st.one_of(
    st.text(max_size=80),
    st.builds(
        _join,
        st.lists(
            st.builds(lambda f, op, v: f"{f}{op}{v}", _FIELD_PATHS,
                      st.sampled_from(["=", "==", "!=", "", "=="]), _FIELD_VALUES),
            min_size=1, max_size=4,
        ),
        st.lists(st.sampled_from([",", ",,", " ,"]), max_size=3),
    ),
)

#: C{limit} values: integers of every size, and text.
LIMITS = st.one_of(
    st.integers(-5, 20).map(str),
    st.integers(-(2**80), 2**80).map(str),
    ANY_TEXT,
    st.sampled_from(["1e3", "0x10", " 1", "1 ", "+1", "01", "1.0"]),
)

_JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(-(2**200), 2**200),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
)

#: Any JSON value, boundedly nested.
JSON_VALUES = st.recursive(
    _JSON_SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


_TOKEN_FIELDS = st.fixed_dictionaries(
    {},
    optional={
        "v": st.one_of(st.just("meta.k8s.io/v1"), JSON_VALUES),
        "rv": st.one_of(st.integers(-3, 10**6), st.integers(-(2**70), 2**70), JSON_VALUES),
        "start": st.one_of(
            st.sampled_from(["a", "x\u0000", "/", "//a", "../a", "a/../b", "\ufffd", ""]),
            st.text(max_size=20), JSON_VALUES,
        ),
    },
)

#: Continue tokens made from scratch: random strings, base64 of random
#: bytes, and base64 of JSON shaped (or misshaped) like a real token.
CRAFTED_TOKENS = st.one_of(
    st.text(max_size=60),
    st.binary(max_size=60).map(_b64),
    st.binary(max_size=60).map(lambda raw: base64.b64encode(raw).decode()),
    _TOKEN_FIELDS.map(lambda fields: _b64(json.dumps(fields).encode())),
    JSON_VALUES.map(lambda value: _b64(json.dumps(value).encode())),
)


def mutated(token: str) -> st.SearchStrategy[str]:
    """
    Variations of a real continue token: truncated, extended, one
    character changed, re-padded, or its JSON edited.
    """
    edits = st.one_of(
        st.integers(0, max(len(token) - 1, 0)).map(lambda n: token[:n]),
        st.text(min_size=1, max_size=8).map(lambda extra: token + extra),
        st.tuples(st.integers(0, max(len(token) - 1, 0)), st.characters()).map(
            lambda edit: token[: edit[0]] + edit[1] + token[edit[0] + 1:]
        ),
        st.just(token + "=="),
        st.just(token.replace("-", "+").replace("_", "/")),
    )
    decoded = _decode_token(token)
    if decoded is None:
        return edits
    reshaped = st.builds(
        lambda field, value: _b64(json.dumps({**decoded, field: value}).encode()),
        st.sampled_from(["v", "rv", "start", "extra"]),
        st.one_of(JSON_VALUES, st.integers(-(2**70), 2**70)),
    )
    return st.one_of(edits, reshaped)


def _decode_token(token: str) -> dict[str, Any] | None:
    try:
        value = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


#: C{resourceVersion} text that is not a small revision number.
ODD_RESOURCE_VERSIONS = st.one_of(
    st.sampled_from(["", "0", "-1", "abc", " 1", "1 ", "1e3", "0x10", "+1", "01", "1.0",
                     "18446744073709551616"]),
    ANY_TEXT,
)
RESOURCE_VERSION_MATCHES = st.one_of(
    st.sampled_from(["", "Exact", "NotOlderThan", "exact", "notolderthan", "Bogus"]), ANY_TEXT
)
BOOLEAN_TEXT = st.one_of(st.sampled_from(["", "true", "false", "1", "0", "True", "yes"]),
                         ANY_TEXT)

#: Object names: valid ones, ones each rule forbids, percent signs, dots,
#: slashes, control characters, any Unicode, and very long ones.
NAMES = st.one_of(
    _DNS_LABEL,
    st.sampled_from([".", "..", "a/b", "a%2Fb", "%", "%ff", "a b", "a.b", "-a", "a-",
                     "A", "\x00", "a\nb", "\ufffd", "\U0001f600", "a" * 253, "a" * 254,
                     "b" * 2000, "a..b", "./a", "a/..", "?", "#", "a;b", "\\"]),
    st.text(min_size=1, max_size=60),
    st.text(alphabet="ab.-/%~", min_size=1, max_size=12),
)

# -- bodies -------------------------------------------------------------------

FLUNDER_VERSIONS = ["v1alpha1", "v1beta1"]


def _field(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """
    A field's value: mostly right, sometimes any JSON value (the wrong type).
    """
    return st.one_of(valid, valid, JSON_VALUES)


_LABELS = st.dictionaries(_LABEL_KEYS, _LABEL_VALUES, max_size=3)
_TIMESTAMPS = st.sampled_from(["2024-01-02T03:04:05Z", "garbage", "2024-13-45T99:99:99Z", ""])
_INT64ISH = st.one_of(st.integers(-5, 5), st.integers(-(2**70), 2**70))
_OWNER = st.fixed_dictionaries(
    {},
    optional={
        "apiVersion": _field(st.just("v1")),
        "kind": _field(st.just("Pod")),
        "name": _field(_DNS_LABEL),
        "uid": _field(st.uuids().map(str)),
        "controller": _field(st.booleans()),
    },
)
_MANAGED = st.fixed_dictionaries(
    {},
    optional={
        "manager": _field(ANY_TEXT),
        "operation": _field(st.sampled_from(["Apply", "Update", "Bogus"])),
        "apiVersion": _field(st.sampled_from(["wardle.example.com/v1beta1", "x"])),
        "time": _field(_TIMESTAMPS),
        "fieldsType": _field(st.sampled_from(["FieldsV1", "FieldsV2"])),
        "fieldsV1": JSON_VALUES,
    },
)
METADATA = st.fixed_dictionaries(
    {},
    optional={
        "name": _field(NAMES),
        "generateName": _field(st.one_of(_DNS_LABEL.map(lambda n: n + "-"), ANY_TEXT)),
        "namespace": _field(st.one_of(_DNS_LABEL, ANY_TEXT)),
        "labels": _field(_LABELS),
        "annotations": _field(st.dictionaries(_LABEL_KEYS, ANY_TEXT, max_size=3)),
        "resourceVersion": _field(ODD_RESOURCE_VERSIONS),
        "uid": _field(st.uuids().map(str)),
        "generation": _field(_INT64ISH),
        "creationTimestamp": _field(_TIMESTAMPS),
        "deletionTimestamp": _field(_TIMESTAMPS),
        "deletionGracePeriodSeconds": _field(_INT64ISH),
        "finalizers": _field(st.lists(st.one_of(_LABEL_KEYS, ANY_TEXT), max_size=3)),
        "ownerReferences": _field(st.lists(_OWNER, max_size=2)),
        "managedFields": _field(st.lists(_MANAGED, max_size=2)),
    },
)
_FLUNDER_SPEC = st.fixed_dictionaries(
    {},
    optional={
        "reference": _field(ANY_TEXT),
        "referenceType": _field(st.sampled_from(["Flunder", "Fischer", "", "Other"])),
        "fischerReference": _field(_DNS_LABEL),
        "flunderReference": _field(_DNS_LABEL),
    },
)


def flunder_bodies(version: str) -> st.SearchStrategy[dict[str, Any]]:
    """
    Flunder bodies for C{version} whose every field may have the wrong
    type, plus unknown fields now and then.
    """
    return st.fixed_dictionaries(
        {},
        optional={
            "apiVersion": _field(st.sampled_from(
                [f"wardle.example.com/{version}", "wardle.example.com/v1", "v1", "a/b/c"])),
            "kind": _field(st.sampled_from(["Flunder", "Fischer", "FlunderList", "Status"])),
            "metadata": _field(METADATA),
            "spec": _field(_FLUNDER_SPEC),
            "status": JSON_VALUES,
            "unknownField": JSON_VALUES,
        },
    )


FISCHER_BODIES = st.fixed_dictionaries(
    {},
    optional={
        "apiVersion": _field(st.just("wardle.example.com/v1alpha1")),
        "kind": _field(st.sampled_from(["Fischer", "Flunder"])),
        "metadata": _field(METADATA),
        "disallowedFlunders": _field(st.lists(st.one_of(_DNS_LABEL, ANY_TEXT), max_size=4)),
    },
)

#: Request body media types, right and wrong.
CONTENT_TYPES = st.one_of(
    st.sampled_from([
        "application/json", "application/yaml", "application/vnd.kubernetes.protobuf",
        "application/json; charset=utf-8", "application/json; charset=utf-16",
        "application/json;;", "application/json; a=1; a=2", "text/plain", "", "*/*",
        "application/merge-patch+json", "application/apply-patch+yaml",
        "application/json-patch+json", "application/strategic-merge-patch+json",
        "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
    ]),
    st.text(max_size=40),
)

#: Garbage: random bytes, invalid UTF-8 and the protobuf envelope.
GARBAGE = st.one_of(
    st.binary(max_size=300),
    st.binary(max_size=40).map(lambda raw: b"k8s\x00" + raw),
    st.sampled_from([b"\xff\xfe", b'{"a":"\xff"}', b'{"metadata":{"name":"\xc3\x28"}}',
                     b"\xed\xa0\x80", b'"\\ud800"', b"\x00" * 10, b"a: \xff\n"]),
    st.text(max_size=100).map(lambda text: text.encode("utf-16")),
)


def nested(depth: int, style: str) -> bytes:
    """
    A value C{depth} levels deep, as JSON arrays or objects, YAML flow
    sequences, or YAML block mappings.
    """
    if style == "json-array":
        return b"[" * depth + b"1" + b"]" * depth
    if style == "json-object":
        return b'{"a":' * depth + b"1" + b"}" * depth
    if style == "yaml-flow":
        return b"[" * depth + b"1" + b"]" * depth
    lines = [b" " * level + b"a:" for level in range(depth)]
    return b"\n".join(lines) + b" 1\n"


NESTING_STYLES = ["json-array", "json-object", "yaml-flow", "yaml-block"]


def alias_bomb(levels: int, fanout: int, name: str) -> bytes:
    """
    A YAML Flunder whose C{spec} holds C{levels} anchors, each a list of
    C{fanout} aliases to the one before: C{fanout ** levels} leaves once
    expanded (the billion laughs at 9 x 9).
    """
    lines = [b"apiVersion: wardle.example.com/v1beta1", b"kind: Flunder",
             b"metadata:", f"  name: {name}".encode(), b"spec:"]
    lines.append(b'  a0: &a0 ["lol"]')
    for level in range(1, levels + 1):
        refs = ", ".join([f"*a{level - 1}"] * fanout)
        lines.append(f"  a{level}: &a{level} [{refs}]".encode())
    return b"\n".join(lines) + b"\n"


# -- patches ------------------------------------------------------------------

_POINTER_SEGMENTS = st.one_of(
    st.sampled_from(["metadata", "labels", "spec", "status", "name", "resourceVersion",
                     "managedFields", "0", "1", "-", "", "~0", "~1", "~2", "~", "a~1b",
                     "999999999999999999999", "-1", "kind", "apiVersion"]),
    st.text(max_size=8),
)

#: JSON pointers: mostly well-formed, sometimes without the leading slash.
POINTERS = st.one_of(
    st.lists(_POINTER_SEGMENTS, max_size=4).map(lambda parts: "".join("/" + p for p in parts)),
    st.text(max_size=12),
)

_OPERATION = st.fixed_dictionaries(
    {"op": st.one_of(st.sampled_from(["add", "remove", "replace", "move", "copy", "test"]),
                     ANY_TEXT, JSON_VALUES)},
    optional={"path": st.one_of(POINTERS, JSON_VALUES), "from": st.one_of(POINTERS, JSON_VALUES),
              "value": JSON_VALUES},
)

#: JSON patch documents: lists of (often malformed) operations, or not a
#: list at all.
JSON_PATCHES = st.one_of(st.lists(_OPERATION, max_size=5), JSON_VALUES)
