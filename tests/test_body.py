# -*- test-case-name: tests.test_body -*-
"""
Tests for L{wardled.api.body}: request bodies decode, and fail, with the
texts Kubernetes gives.
"""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from wardled.api.body import (
    EXACT_SCAN_LIMIT,
    DecodedBody,
    body_media_type,
    format_go_float,
    go_json_syntax_error,
    parse_content_type,
    read_body,
    resolve_plain_scalar,
    summarize_body,
)
from wardled.apierrors import MAX_BODY_BYTES, StatusError

JSON = "application/json"
YAML = "application/yaml"
UNSUPPORTED = (
    "the body of the request was in an unknown format - accepted media types include: "
    "application/json, application/yaml"
)
PARSE = "couldn't get version/kind; json parse error: "
FIND_KIND = (
    'struct { APIVersion string "json:\\"apiVersion,omitempty\\""; '
    'Kind string "json:\\"kind,omitempty\\"" }'
)


def failure(content: bytes, content_type: str | None = JSON, **kwargs: Any) -> StatusError:
    """The StatusError reading C{content} raises."""
    try:
        read_body(content, content_type, **kwargs)
    except StatusError as error:
        return error
    raise AssertionError(f"{content!r} was accepted")


class MediaTypeTests(SynchronousTestCase):
    """
    The Content-Type decides the decoder, as C{NegotiateInputSerializer}.
    """

    def test_json_and_yaml(self) -> None:
        self.assertEqual(body_media_type("application/json"), JSON)
        self.assertEqual(body_media_type("application/yaml"), YAML)

    def test_missing_means_json(self) -> None:
        self.assertEqual(body_media_type(None), JSON)
        self.assertEqual(body_media_type(""), JSON)
        self.assertEqual(read_body(b'{"a":1}', None).obj, {"a": 1})

    def test_parameters_and_case_ignored(self) -> None:
        for header in ("application/json; charset=utf-8", "APPLICATION/JSON",
                       "application/json;", 'application/json; charset="utf-8"',
                       " application/yaml ; charset=utf-8 ;"):
            self.assertIn(body_media_type(header), (JSON, YAML), header)

    def test_unsupported(self) -> None:
        for header in ("application/vnd.kubernetes.protobuf", "application/x-yaml",
                       "text/yaml", "text/plain", "application/merge-patch+json",
                       "application/cbor", "application/json;;", "application/json; x",
                       "application/json; a=1; a=2", "application/json x", "/json"):
            error = failure(b"{}", header)
            self.assertEqual((error.code, error.reason, error.message),
                             (415, "UnsupportedMediaType", UNSUPPORTED), header)

    def test_parse_content_type(self) -> None:
        self.assertEqual(parse_content_type("Application/JSON ; q=1"), "application/json")
        self.assertEqual(parse_content_type("application"), "application")
        self.assertIsNone(parse_content_type("application/"))

    def test_media_type_checked_before_size(self) -> None:
        self.assertEqual(failure(b"x" * (MAX_BODY_BYTES + 1), "text/plain").code, 415)


class SizeTests(SynchronousTestCase):
    """
    Bodies over 3 MiB are refused with 413.
    """

    def test_too_large(self) -> None:
        error = failure(b" " * (MAX_BODY_BYTES + 1))
        self.assertEqual(error.status(), {
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": "Request entity too large: limit is 3145728",
            "reason": "RequestEntityTooLarge", "code": 413,
        })

    def test_exactly_the_limit(self) -> None:
        content = b"{}" + b" " * (MAX_BODY_BYTES - 2)
        self.assertEqual(read_body(content, JSON).obj, {})


class JsonTests(SynchronousTestCase):
    """
    JSON bodies.
    """

    def test_object(self) -> None:
        body = read_body(
            b'{"apiVersion":"wardle.example.com/v1alpha1","kind":"Flunder",'
            b'"metadata":{"name":"a"},"spec":{"n":1,"f":1.5,"big":9223372036854775808}}',
            JSON,
        )
        self.assertEqual(body, DecodedBody({
            "apiVersion": "wardle.example.com/v1alpha1", "kind": "Flunder",
            "metadata": {"name": "a"},
            "spec": {"n": 1, "f": 1.5, "big": 9223372036854775808.0},
        }))
        self.assertIsInstance(body.obj["spec"]["big"], float)

    def test_null_is_empty_object(self) -> None:
        """
        Kubernetes decodes a C{null} body into an empty object.
        """
        self.assertEqual(read_body(b"null", JSON).obj, {})

    def test_not_an_object(self) -> None:
        for content, kind in ((b"[1]", "array"), (b'"s"', "string"), (b"12", "number"),
                              (b"true", "bool")):
            error = failure(content)
            self.assertEqual(
                (error.code, error.reason, error.message),
                (400, "BadRequest",
                 f"{PARSE}json: cannot unmarshal {kind} into Go value of type {FIND_KIND}"),
            )

    def test_empty_body(self) -> None:
        self.assertEqual(failure(b"").message, PARSE + "unexpected end of JSON input")

    def test_syntax_errors(self) -> None:
        cases = {
            b"{": "unexpected end of JSON input",
            b'{"a":1} x': "invalid character 'x' after top-level value",
            b"{'a':1}": "invalid character '\\'' looking for beginning of object key string",
            b'{"a" 1}': "invalid character '1' after object key",
            b'{"a":1 "b":2}': "invalid character '\"' after object key:value pair",
            b"[1 2]": "invalid character '2' after array element",
            b"tru": "invalid character ' ' in literal true (expecting 'e')",
            b"nul!": "invalid character '!' in literal null (expecting 'l')",
            b'{"a":NaN}': "invalid character 'N' looking for beginning of value",
            b'{"a":1.}': "invalid character '}' after decimal point in numeric literal",
            b'{"a":1e}': "invalid character '}' in exponent of numeric literal",
            b'{"a":-}': "invalid character '}' in numeric literal",
            b'{"a":01}': "invalid character '1' after object key:value pair",
            b'{"a":"\\q"}': "invalid character 'q' in string escape code",
            b'{"a":"\\u12x4"}': "invalid character 'x' in \\u hexadecimal character escape",
            b'{"a":"\n"}': "invalid character '\\n' in string literal",
            b'{"a":"x': "unexpected end of JSON input",
            b"\xef\xbb\xbf{}": "invalid character '\u00ef' looking for beginning of value",
            b"\x00": "invalid character '\\x00' looking for beginning of value",
            b"\xc2\xa0{}": "invalid character '\u00c2' looking for beginning of value",
            b"{}}": "invalid character '}' after top-level value",
            b"[,]": "invalid character ',' looking for beginning of value",
            b"{,}": "invalid character ',' looking for beginning of object key string",
        }
        for content, message in cases.items():
            self.assertEqual(failure(content).message, PARSE + message, content)

    def test_syntax_error_helper(self) -> None:
        self.assertIsNone(go_json_syntax_error(b' {"a": [1, -2.5e+3, "x\\u00e9"]} '))
        self.assertEqual(go_json_syntax_error(b"[" * 10001),
                         "invalid character '[' exceeded max depth")
        self.assertEqual(go_json_syntax_error(b"\x80"),
                         "invalid character '\\u0080' looking for beginning of value")

    def test_expected_kind_wording(self) -> None:
        error = failure(b'{"kind":"Flunder","apiVersion":"wardle.example.com/v1', JSON,
                        expected_kind="Flunder")
        self.assertEqual(
            error.message,
            "the object provided is unrecognized (must be of type Flunder): "
            f"{PARSE}unexpected end of JSON input "
            '({"kind":"Flunder","apiVersion" ...)',
        )

    def test_expected_kind_hex_summary(self) -> None:
        error = failure(b"[1,2]", JSON, expected_kind="Flunder")
        self.assertEqual(
            error.message,
            "the object provided is unrecognized (must be of type Flunder): "
            f"{PARSE}json: cannot unmarshal array into Go value of type {FIND_KIND} "
            "(5b312c325d)",
        )

    def test_empty_summary(self) -> None:
        self.assertTrue(failure(b"", expected_kind="Fischer").message.endswith("(<empty>)"))

    def test_kind_and_api_version_must_be_strings(self) -> None:
        self.assertEqual(
            failure(b'{"kind":5}').message,
            PARSE + "json: cannot unmarshal number into Go struct field .kind of type string",
        )
        self.assertEqual(
            failure(b'{"metadata":{},"apiVersion":["x"]}').message,
            PARSE + "json: cannot unmarshal array into Go struct field .apiVersion "
            "of type string",
        )
        self.assertEqual(read_body(b'{"kind":null}', JSON).obj, {"kind": None})
        self.assertEqual(
            failure(b'{"Kind":true}').message,
            PARSE + "json: cannot unmarshal bool into Go struct field .kind of type string",
        )

    def test_bad_group_version(self) -> None:
        self.assertEqual(failure(b'{"apiVersion":"a/b/c"}').message,
                         "unexpected GroupVersion string: a/b/c")
        self.assertEqual(failure(b'{"apiVersion":"v1","APIVERSION":"x/y/z"}').message,
                         "unexpected GroupVersion string: x/y/z")
        self.assertEqual(read_body(b'{"apiVersion":"x/y/z","apiversion":"v1"}', JSON).obj,
                         {"apiVersion": "x/y/z", "apiversion": "v1"})

    def test_invalid_utf8_in_strings_replaced(self) -> None:
        """
        Go writes one U+FFFD per invalid byte.
        """
        self.assertEqual(read_body(b'{"a":"x\xffy"}', JSON).obj, {"a": "x\ufffdy"})
        self.assertEqual(read_body(b'{"a\xe2\x82":"\xe2\x82z"}', JSON).obj,
                         {"a\ufffd\ufffd": "\ufffd\ufffdz"})

    def test_large_bodies_keep_go_wording(self) -> None:
        """
        Above L{EXACT_SCAN_LIMIT} the error is derived from Python's parse,
        not re-scanned, and still reads as Go's.
        """
        pad = b'"' + b"x" * (EXACT_SCAN_LIMIT + 10) + b'"'
        cases = {
            b'{"a":' + pad + b',"b" 1}': "invalid character '1' after object key",
            b"[" + pad + b" 2]": "invalid character '2' after array element",
            b'{"a":[' + pad + b'],"b":1 "c":2}':
                "invalid character '\"' after object key:value pair",
            b'{"a":' + pad + b',"b":"\\u12x4"}':
                "invalid character 'x' in \\u hexadecimal character escape",
            b'{"a":' + pad + b"} x": "invalid character 'x' after top-level value",
            b'{"a":' + pad: "unexpected end of JSON input",
            b'{"a":' + pad + b',"b":-Infinity}': "invalid character 'I' in numeric literal",
        }
        for content, message in cases.items():
            self.assertEqual(failure(content).message, PARSE + message, message)
            self.assertEqual(go_json_syntax_error(content), message)

    def test_lone_surrogate_escape_replaced(self) -> None:
        body = read_body(b'{"a\\udc00":"\\ud800x","b":"\\ud83d\\ude00"}', JSON)
        self.assertEqual(body.obj, {"a\ufffd": "\ufffdx", "b": "\U0001f600"})

    def test_duplicates(self) -> None:
        body = read_body(
            b'{"kind":"Flunder","metadata":{"name":"a","name":"b"},"kind":"Flunder",'
            b'"spec":{"items":[{"x":1},{"x":1,"x":2}]}}',
            JSON,
        )
        self.assertEqual(body.obj["metadata"], {"name": "b"})
        self.assertEqual(body.obj["spec"]["items"][1], {"x": 2})
        self.assertEqual(body.duplicate_fields, ["kind", "metadata.name", "spec.items[1].x"])
        self.assertEqual(body.strict_errors, [
            'duplicate field "kind"', 'duplicate field "metadata.name"',
            'duplicate field "spec.items[1].x"',
        ])
        self.assertEqual(body.warnings(), body.strict_errors)

    def test_no_duplicates(self) -> None:
        body = read_body(b'{"a":{"b":1},"c":[{"b":2}]}', JSON)
        self.assertEqual((body.duplicate_fields, body.strict_errors, body.warnings()),
                         ([], [], []))


class YamlTests(SynchronousTestCase):
    """
    YAML bodies, read as sigs.k8s.io/yaml reads them.
    """

    def test_object(self) -> None:
        body = read_body(
            b"apiVersion: wardle.example.com/v1alpha1\n"
            b"kind: Flunder\n"
            b"metadata:\n"
            b"  name: my-flunder\n"
            b"  creationTimestamp: 2026-01-01T00:00:00Z\n"
            b"  labels: {a: 'yes'}\n"
            b"spec:\n"
            b"  reference: flunders/x\n",
            YAML,
        )
        self.assertEqual(body, DecodedBody({
            "apiVersion": "wardle.example.com/v1alpha1",
            "kind": "Flunder",
            "metadata": {"name": "my-flunder", "creationTimestamp": "2026-01-01T00:00:00Z",
                         "labels": {"a": "yes"}},
            "spec": {"reference": "flunders/x"},
        }))

    def test_yaml_1_1_scalars(self) -> None:
        body = read_body(
            b"b: [yes, No, on, OFF, y, n, true]\n"
            b"i: [0x1F, 0o17, 017, 1_000, -5, +5, 0b101]\n"
            b"f: [1.5, .5, 1e3, 08, 1.0, 1e400]\n"
            b"s: [2026-01-01, 12:30, 'true', nope, .inf.x]\n"
            b"z: [~, null, ]\n",
            YAML,
        )
        self.assertEqual(body.obj, {
            "b": [True, False, True, False, True, False, True],
            "i": [31, 15, 15, 1000, -5, 5, 5],
            "f": [1.5, 0.5, 1000, 8, 1, "1e400"],
            "s": ["2026-01-01", "12:30", "true", "nope", ".inf.x"],
            "z": [None, None],
        })
        self.assertIsInstance(body.obj["f"][2], int)

    def test_non_string_keys_become_strings(self) -> None:
        self.assertEqual(
            read_body(b"1: a\ntrue: b\n1.5: c\nyes: d\n0.1: e\n", YAML).obj,
            {"1": "a", "true": "d", "1.5": "c", "0.1": "e"},
        )

    def test_null_key(self) -> None:
        self.assertEqual(failure(b"~: a\n", YAML).message,
                         'unsupported map key of type: <nil>, key: <nil>, value: "a"')

    def test_nan_value(self) -> None:
        self.assertEqual(failure(b"a: .nan\n", YAML).message, "json: unsupported value: NaN")
        self.assertEqual(failure(b"a: -.inf\n", YAML).message,
                         "json: unsupported value: -Inf")

    def test_json_through_yaml(self) -> None:
        self.assertEqual(read_body(b'{"kind": "Flunder", "n": [1, 2.5]}', YAML).obj,
                         {"kind": "Flunder", "n": [1, 2.5]})

    def test_empty_and_null_documents(self) -> None:
        for content in (b"", b"---\n", b"# just a comment\n", b"null\n"):
            self.assertEqual(read_body(content, YAML).obj, {}, content)

    def test_first_document_only(self) -> None:
        """
        go-yaml reads the first document and ignores the rest, even if it is
        broken.
        """
        self.assertEqual(read_body(b"a: 1\n---\nb: 2\n---\n[: x\n", YAML).obj, {"a": 1})

    def test_not_an_object(self) -> None:
        self.assertEqual(
            failure(b"- a\n- b\n", YAML).message,
            f"{PARSE}json: cannot unmarshal array into Go value of type {FIND_KIND}",
        )
        self.assertEqual(
            failure(b"hello\n", YAML).message,
            f"{PARSE}json: cannot unmarshal string into Go value of type {FIND_KIND}",
        )
        self.assertEqual(
            failure(b"kind: 5\n", YAML).message,
            PARSE + "json: cannot unmarshal number into Go struct field .kind of type string",
        )

    def test_syntax_errors(self) -> None:
        self.assertEqual(failure(b"a: b: c\n", YAML).message,
                         "yaml: mapping values are not allowed in this context")
        self.assertEqual(failure(b"a: 1\nb: [1, 2\n", YAML).message,
                         "yaml: line 2: did not find expected ',' or ']'")
        self.assertEqual(failure(b"a: 1\n\tb: 2\n", YAML).message,
                         "yaml: line 2: found character that cannot start any token")
        self.assertEqual(failure(b"a: \xff\n", YAML).message,
                         "yaml: invalid leading UTF-8 octet")

    def test_syntax_error_with_expected_kind(self) -> None:
        self.assertEqual(
            failure(b"a: b: c\n", YAML, expected_kind="Flunder").message,
            "the object provided is unrecognized (must be of type Flunder): "
            "yaml: mapping values are not allowed in this context (613a20623a20630a)",
        )

    def test_anchors_and_merge(self) -> None:
        body = read_body(
            b"base: &b {x: 1, z: 2}\n"
            b"copy: *b\n"
            b"merged:\n"
            b"  <<: *b\n"
            b"  z: 3\n"
            b"many:\n"
            b"  <<: [{x: 10}, {x: 20, w: 1}]\n",
            YAML,
        )
        self.assertEqual(body.obj, {
            "base": {"x": 1, "z": 2}, "copy": {"x": 1, "z": 2},
            "merged": {"x": 1, "z": 3}, "many": {"x": 10, "w": 1},
        })
        body.obj["copy"]["x"] = 99
        self.assertEqual(body.obj["base"]["x"], 1)

    def test_bad_merge(self) -> None:
        self.assertEqual(
            failure(b"a:\n  <<: 1\n", YAML).message,
            "yaml: map merge requires map or sequence of maps as the value",
        )

    def test_alias_errors(self) -> None:
        self.assertEqual(failure(b"a: *nope\n", YAML).message,
                         "yaml: unknown anchor 'nope' referenced")
        self.assertEqual(failure(b"a: &x [1, *x]\n", YAML).message,
                         "yaml: anchor 'x' value contains itself")

    def test_billion_laughs(self) -> None:
        lines = [b'a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
        for level in range(1, 10):
            refs = ",".join([f"*a{level - 1}"] * 9).encode()
            lines.append(f"a{level}: &a{level} [".encode() + refs + b"]")
        self.assertEqual(failure(b"\n".join(lines) + b"\n", YAML).message,
                         "yaml: document contains excessive aliasing")

    def test_deep_nesting_does_not_crash(self) -> None:
        """
        Deep nesting is a 400, not a stack overflow.  (libyaml stops at 1000
        levels, go-yaml at 10000, so the wording differs from Go's.)
        """
        content = b"a: " + b"[" * 20000 + b"]" * 20000 + b"\n"
        error = failure(content, YAML)
        self.assertEqual(error.code, 400)
        self.assertTrue(error.message.startswith("yaml: exceeded max"), error.message)
        value = read_body(b"a: " + b"[" * 500 + b"]" * 500, YAML).obj["a"]
        depth = 1
        while value:
            value = value[0]
            depth += 1
        self.assertEqual(depth, 500)

    def test_explicit_tags(self) -> None:
        self.assertEqual(
            read_body(b'a: !!int "12"\nb: !!str 12\nc: !!float 3\nd: !foo bar\n'
                      b"e: !!binary aGk=\nf: !!timestamp 2026-01-01\n", YAML).obj,
            {"a": 12, "b": "12", "c": 3, "d": "bar", "e": "hi", "f": "2026-01-01"},
        )
        self.assertEqual(failure(b"a: !!int abc\n", YAML).message,
                         "yaml: cannot decode !!str `abc` as a !!int")

    def test_duplicates(self) -> None:
        body = read_body(
            b"kind: Flunder\n"
            b"metadata:\n"
            b"  name: a\n"
            b"  name: b\n"
            b"kind: Flunder\n"
            b"spec:\n"
            b"  l:\n"
            b"  - {x: 1, x: 2}\n",
            YAML,
        )
        self.assertEqual(body.obj["metadata"], {"name": "b"})
        self.assertEqual(body.duplicate_fields, ["metadata.name", "kind", "spec.l[0].x"])
        self.assertEqual(body.strict_errors, [(
            "yaml: unmarshal errors:\n"
            '  line 4: key "name" already set in map\n'
            '  line 5: key "kind" already set in map\n'
            '  line 8: key "x" already set in map'
        )])
        self.assertEqual(body.warnings(), [
            'line 4: key "name" already set in map',
            'line 5: key "kind" already set in map',
            'line 8: key "x" already set in map',
        ])

    def test_duplicate_keys_by_go_identity(self) -> None:
        body = read_body(b"true: a\nyes: b\n1: c\n'1': d\n", YAML)
        self.assertEqual(body.duplicate_fields, ["true"])
        self.assertEqual(body.strict_errors,
                         ["yaml: unmarshal errors:\n  line 2: key true already set in map"])


class HelperTests(SynchronousTestCase):
    """
    The Go-compatibility helpers the YAML encoder shares.
    """

    def test_resolve_plain_scalar(self) -> None:
        self.assertEqual(resolve_plain_scalar(""), ("null", None))
        self.assertEqual(resolve_plain_scalar("Y"), ("bool", True))
        self.assertEqual(resolve_plain_scalar("2026-01-01T00:00:00Z"),
                         ("timestamp", "2026-01-01T00:00:00Z"))
        self.assertEqual(resolve_plain_scalar("2026-1-2 3:04:05.5"),
                         ("timestamp", "2026-1-2 3:04:05.5"))
        self.assertEqual(resolve_plain_scalar("2026-02-30"), ("str", "2026-02-30"))
        self.assertEqual(resolve_plain_scalar("18446744073709551615"),
                         ("int", 18446744073709551615))
        self.assertEqual(resolve_plain_scalar("<<"), ("str", "<<"))
        self.assertEqual(resolve_plain_scalar("+.5"), ("float", 0.5))

    def test_format_go_float(self) -> None:
        cases = [(1e6, "g", "1e+06"), (123456.0, "g", "123456"), (1e-5, "g", "1e-05"),
                 (0.0001, "g", "0.0001"), (-2.5, "g", "-2.5"), (1e21, "e", "1e+21"),
                 (1e20, "f", "100000000000000000000"), (0.001, "f", "0.001"),
                 (0.0, "g", "0"), (float("inf"), "g", "+Inf")]
        for value, fmt, text in cases:
            self.assertEqual(format_go_float(value, fmt), text, (value, fmt))
        self.assertEqual(format_go_float(0.1, "g", bits=32), "0.1")
        self.assertEqual(format_go_float(16777217.0, "g", bits=32), "1.6777216e+07")

    def test_summarize_body(self) -> None:
        self.assertEqual(summarize_body(b'{"a":1}'), '{"a":1}')
        self.assertEqual(summarize_body(b"x" * 31), "78" * 30 + " ...")
