# -*- test-case-name: tests.test_negotiate -*-
"""
Tests for L{wardled.api.negotiate}: Accept parsing and negotiation with the
headers real clients send, pretty printing, and Go-identical encoding.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from wardled.api.negotiate import (
    DEFAULT_OUTPUT,
    JSON,
    RAW_JSON_OUTPUT,
    SUPPORTED_MEDIA_TYPES,
    YAML,
    MediaType,
    Output,
    encode,
    encode_json,
    encode_yaml,
    negotiate_error_output,
    negotiate_output,
    parse_accept,
    wants_pretty,
)
from wardled.apierrors import StatusError

KUBECTL_TABLE = (
    "application/json;as=Table;v=v1;g=meta.k8s.io,"
    "application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
)
KUBECTL_PLAIN = "application/json, */*"
CURL = "*/*"
HTTPIE = "application/json, */*;q=0.5"
PYTHON_CLIENT = "application/json"
NOT_ACCEPTABLE = (
    "only the following media types are accepted: application/json, application/yaml"
)

TABLE_V1 = Output("json", "Table", "v1", JSON)


def negotiate(accept: str | None, stream: bool = False) -> Output:
    """Negotiate as a resource endpoint does."""
    return negotiate_output(accept, allow_table=True, allow_partial=True, stream=stream)


class ParseAcceptTests(SynchronousTestCase):
    """
    L{parse_accept} parses like goautoneg and orders like its sort.
    """

    def test_empty(self) -> None:
        self.assertEqual(parse_accept(None), [])
        self.assertEqual(parse_accept(""), [])

    def test_kubectl_table_header(self) -> None:
        self.assertEqual(
            parse_accept(KUBECTL_TABLE),
            [
                MediaType("application", "json",
                          {"as": "Table", "v": "v1", "g": "meta.k8s.io"}),
                MediaType("application", "json",
                          {"as": "Table", "v": "v1beta1", "g": "meta.k8s.io"}),
                MediaType("application", "json", {}),
            ],
        )

    def test_q_values_order(self) -> None:
        self.assertEqual(
            parse_accept("application/yaml;q=0.5, application/json"),
            [MediaType("application", "json"), MediaType("application", "yaml", {}, 0.5)],
        )

    def test_wildcards_after_specific_types(self) -> None:
        self.assertEqual(
            [(c.type, c.subtype) for c in parse_accept("*/*, application/*, application/yaml")],
            [("application", "yaml"), ("application", "*"), ("*", "*")],
        )

    def test_lone_star(self) -> None:
        self.assertEqual(parse_accept("*"), [MediaType("*", "*")])

    def test_whitespace_and_case(self) -> None:
        self.assertEqual(
            parse_accept(" Application/JSON ; AS = Table ; Q=0.5 "),
            [MediaType("application", "json", {"as": "Table"}, 0.5)],
        )

    def test_quoted_parameter(self) -> None:
        self.assertEqual(
            parse_accept('application/json;as="Table"'),
            [MediaType("application", "json", {"as": "Table"})],
        )

    def test_malformed_clauses_skipped(self) -> None:
        self.assertEqual(
            parse_accept("text, a/b/c, application/, application/json;x;y=1=2"),
            [MediaType("application", "json")],
        )

    def test_bad_q_is_zero(self) -> None:
        self.assertEqual(parse_accept("application/json;q=abc")[0].q, 0.0)

    def test_q_zero_kept_last(self) -> None:
        """
        Kubernetes does not drop C{q=0} clauses, it only sorts them last.
        """
        self.assertEqual(
            [c.subtype for c in parse_accept("application/json;q=0, application/yaml")],
            ["yaml", "json"],
        )


class NegotiateOutputTests(SynchronousTestCase):
    """
    L{negotiate_output} with the headers real clients send.
    """

    def test_no_header_is_json(self) -> None:
        self.assertEqual(negotiate(None), DEFAULT_OUTPUT)
        self.assertEqual(negotiate(""), Output("json", None, "v1", "application/json"))

    def test_kubectl_table(self) -> None:
        self.assertEqual(negotiate(KUBECTL_TABLE), TABLE_V1)

    def test_kubectl_table_falls_back_without_tables(self) -> None:
        output = negotiate_output(KUBECTL_TABLE, allow_table=False, allow_partial=False)
        self.assertEqual(output, DEFAULT_OUTPUT)

    def test_common_clients_get_json(self) -> None:
        for accept in (KUBECTL_PLAIN, CURL, HTTPIE, PYTHON_CLIENT, "application/*"):
            self.assertEqual(negotiate(accept), DEFAULT_OUTPUT, accept)

    def test_browser(self) -> None:
        accept = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
        self.assertEqual(negotiate(accept), DEFAULT_OUTPUT)

    def test_yaml(self) -> None:
        self.assertEqual(negotiate("application/yaml"), Output("yaml", None, "v1", YAML))

    def test_yaml_preferred_by_q(self) -> None:
        self.assertEqual(negotiate("application/json;q=0.9, application/yaml").encoding, "yaml")

    def test_table_v1beta1(self) -> None:
        self.assertEqual(
            negotiate("application/json;as=Table;v=v1beta1;g=meta.k8s.io"),
            Output("json", "Table", "v1beta1", JSON),
        )

    def test_table_in_yaml(self) -> None:
        self.assertEqual(
            negotiate("application/yaml;as=Table;v=v1;g=meta.k8s.io"),
            Output("yaml", "Table", "v1", YAML),
        )

    def test_content_type_is_not_echoed(self) -> None:
        """
        Kubernetes answers a Table request with C{Content-Type:
        application/json}; only aggregated discovery echoes C{as=}.
        """
        self.assertEqual(negotiate(KUBECTL_TABLE).content_type, "application/json")

    def test_partial_object_metadata(self) -> None:
        for kind in ("PartialObjectMetadata", "PartialObjectMetadataList"):
            self.assertEqual(
                negotiate(f"application/json;as={kind};g=meta.k8s.io;v=v1"),
                Output("json", kind, "v1", JSON),
            )

    def test_partial_not_allowed(self) -> None:
        accept = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"
        error = self.assertRaises(
            StatusError, negotiate_output, accept, allow_table=True, allow_partial=False)
        self.assertEqual(error.code, 406)

    def test_unsupported_conversion_falls_through(self) -> None:
        accept = "application/json;as=Foo;v=v1;g=meta.k8s.io, application/yaml"
        self.assertEqual(negotiate(accept).encoding, "yaml")

    def test_unsupported_conversions_alone(self) -> None:
        for accept in (
            "application/json;as=Foo;v=v1;g=meta.k8s.io",
            "application/json;as=Table;v=v1alpha1;g=meta.k8s.io",
            "application/json;as=Table;v=v1;g=example.com",
            "application/json;as=Table",
            "application/json;v=v1",
            "application/json;as=",
        ):
            error = self.assertRaises(StatusError, negotiate, accept)
            self.assertEqual(error.status(), {
                "kind": "Status", "apiVersion": "v1", "metadata": {},
                "status": "Failure", "message": NOT_ACCEPTABLE,
                "reason": "NotAcceptable", "code": 406,
            }, accept)

    def test_protobuf_alone_is_406_without_protobuf(self) -> None:
        error = self.assertRaises(StatusError, negotiate, "application/vnd.kubernetes.protobuf")
        self.assertEqual(error.code, 406)
        self.assertEqual(error.message, NOT_ACCEPTABLE)
        self.assertEqual(SUPPORTED_MEDIA_TYPES, ["application/json", "application/yaml"])

    def test_protobuf_then_json(self) -> None:
        self.assertEqual(
            negotiate("application/vnd.kubernetes.protobuf, application/json"), DEFAULT_OUTPUT)

    def test_protobuf_table_skipped(self) -> None:
        accept = ("application/vnd.kubernetes.protobuf;as=Table;v=v1;g=meta.k8s.io,"
                  "application/json;as=Table;v=v1;g=meta.k8s.io")
        self.assertEqual(negotiate(accept), TABLE_V1)

    def test_unknown_type(self) -> None:
        error = self.assertRaises(StatusError, negotiate, "text/html")
        self.assertEqual((error.code, error.message), (406, NOT_ACCEPTABLE))

    def test_whitespace_only_header(self) -> None:
        """
        Only a missing or empty header defaults to JSON, as in Kubernetes.
        """
        self.assertRaises(StatusError, negotiate, " ")

    def test_pretty_parameter(self) -> None:
        self.assertTrue(negotiate("application/json;pretty=1").pretty)
        self.assertFalse(negotiate("application/json;pretty=0").pretty)

    def test_stream_parameter(self) -> None:
        self.assertEqual(negotiate("application/json;stream=watch"), DEFAULT_OUTPUT)
        self.assertRaises(StatusError, negotiate, "application/json;stream=other")
        self.assertRaises(StatusError, negotiate, "application/yaml;stream=watch")

    def test_server_version_parameter(self) -> None:
        self.assertEqual(negotiate("application/json;sv=v1"), DEFAULT_OUTPUT)
        self.assertRaises(StatusError, negotiate, "application/json;sv=v2")
        self.assertRaises(
            StatusError, negotiate_output, "application/json;sv=v1",
            allow_table=False, allow_partial=False)

    def test_unknown_parameters_ignored(self) -> None:
        self.assertEqual(negotiate("application/json;charset=utf-8;export=1"), DEFAULT_OUTPUT)

    def test_watch_json_and_table(self) -> None:
        self.assertEqual(negotiate(None, stream=True), DEFAULT_OUTPUT)
        self.assertEqual(negotiate(KUBECTL_TABLE, stream=True), TABLE_V1)
        self.assertEqual(negotiate(HTTPIE, stream=True), DEFAULT_OUTPUT)

    def test_watch_refuses_yaml(self) -> None:
        """
        YAML has no stream serializer; like Kubernetes we do not fall
        through to a later clause once YAML is chosen.
        """
        for accept in ("application/yaml", "application/yaml, application/json"):
            error = self.assertRaises(StatusError, negotiate, accept, True)
            self.assertEqual(
                (error.code, error.message),
                (406, ("only the following media types are accepted: "
                       "application/json;stream=watch")),
            )

    def test_watch_nothing_acceptable(self) -> None:
        error = self.assertRaises(StatusError, negotiate, "text/plain", True)
        self.assertEqual(error.message, NOT_ACCEPTABLE)


class NegotiateErrorOutputTests(SynchronousTestCase):
    """
    L{negotiate_error_output} picks the format for a Status.
    """

    def test_json_and_yaml(self) -> None:
        self.assertEqual(negotiate_error_output(None), DEFAULT_OUTPUT)
        self.assertEqual(negotiate_error_output("application/yaml").encoding, "yaml")

    def test_kubectl_table_header_gets_plain_json(self) -> None:
        self.assertEqual(negotiate_error_output(KUBECTL_TABLE), DEFAULT_OUTPUT)

    def test_unacceptable_falls_back_to_raw_json(self) -> None:
        for accept in ("text/html", "application/json;as=Table;v=v1;g=meta.k8s.io"):
            self.assertEqual(negotiate_error_output(accept), RAW_JSON_OUTPUT)
        self.assertTrue(RAW_JSON_OUTPUT.pretty)


class WantsPrettyTests(SynchronousTestCase):
    """
    L{wants_pretty} follows Kubernetes' C{isPrettyPrint}.
    """

    def test_query_decides(self) -> None:
        for value in ("1", "t", "T", "true", "TRUE", "True"):
            self.assertTrue(wants_pretty(value, "kubectl/v1.31"), value)
        for value in ("0", "f", "false", "False", "garbage", "yes"):
            self.assertFalse(wants_pretty(value, "curl/8.5.0"), value)

    def test_user_agents(self) -> None:
        self.assertTrue(wants_pretty(None, "curl/8.5.0"))
        self.assertTrue(wants_pretty(None, "Wget/1.21"))
        self.assertTrue(wants_pretty(None, "Mozilla/5.0 (X11; Linux x86_64)"))
        self.assertTrue(wants_pretty("", "curl/8.5.0"))
        self.assertFalse(wants_pretty(None, "kubectl/v1.31.0 (linux/amd64)"))
        self.assertFalse(wants_pretty(None, "HTTPie/3.2.2"))
        self.assertFalse(wants_pretty(None, "OpenAPI-Generator/31.0.0/python"))
        self.assertFalse(wants_pretty(None, "Curl/8"))
        self.assertFalse(wants_pretty(None, None))


SAMPLE = {
    "kind": "Flunder",
    "apiVersion": "wardle.example.com/v1beta1",
    "metadata": {"name": "a", "labels": {}, "finalizers": []},
    "spec": {"reference": "b"},
}


class EncodeJsonTests(SynchronousTestCase):
    """
    JSON comes out as Go's encoding/json writes it.
    """

    def test_compact_has_trailing_newline(self) -> None:
        self.assertEqual(
            encode(SAMPLE, DEFAULT_OUTPUT, False),
            b'{"kind":"Flunder","apiVersion":"wardle.example.com/v1beta1",'
            b'"metadata":{"name":"a","labels":{},"finalizers":[]},'
            b'"spec":{"reference":"b"}}\n',
        )

    def test_pretty_is_marshal_indent(self) -> None:
        self.assertEqual(
            encode(SAMPLE, DEFAULT_OUTPUT, True),
            b'{\n  "kind": "Flunder",\n  "apiVersion": "wardle.example.com/v1beta1",\n'
            b'  "metadata": {\n    "name": "a",\n    "labels": {},\n    "finalizers": []\n'
            b'  },\n  "spec": {\n    "reference": "b"\n  }\n}',
        )

    def test_pretty_media_type_parameter(self) -> None:
        self.assertEqual(encode({"a": 1}, Output(pretty=True), False), b'{\n  "a": 1\n}')

    def test_html_characters_escaped(self) -> None:
        self.assertEqual(
            encode_json({"<k>": "a<b>&c\u2028\u2029"}),
            b'{"\\u003ck\\u003e":"a\\u003cb\\u003e\\u0026c\\u2028\\u2029"}\n',
        )

    def test_unicode_unescaped(self) -> None:
        self.assertEqual(encode_json({"n": "h\u00e9llo \u2603"}),
                         '{"n":"h\u00e9llo \u2603"}\n'.encode())

    def test_control_characters(self) -> None:
        self.assertEqual(encode_json({"c": "\b\f\n\r\t\x01\x7f"}),
                         b'{"c":"\\b\\f\\n\\r\\t\\u0001\x7f"}\n')

    def test_lone_surrogate_replaced(self) -> None:
        self.assertEqual(encode_json({"s": "a\ud800"}), '{"s":"a\ufffd"}\n'.encode())

    def test_nan_refused(self) -> None:
        self.assertRaises(ValueError, encode_json, {"f": float("nan")})

    def test_status(self) -> None:
        status = {"kind": "Status", "apiVersion": "v1", "metadata": {},
                  "status": "Failure", "message": 'flunders "x" not found',
                  "reason": "NotFound", "code": 404}
        self.assertEqual(
            encode(status, DEFAULT_OUTPUT, False),
            b'{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",'
            b'"message":"flunders \\"x\\" not found","reason":"NotFound","code":404}\n',
        )


class EncodeYamlTests(SynchronousTestCase):
    """
    YAML comes out as sigs.k8s.io/yaml (go-yaml v2) writes it.
    """

    def test_object(self) -> None:
        obj = {
            "kind": "Flunder",
            "apiVersion": "wardle.example.com/v1alpha1",
            "metadata": {
                "name": "my-flunder",
                "namespace": "default",
                "uid": "4e1c6a5e-0000-4000-8000-000000000001",
                "resourceVersion": "42",
                "creationTimestamp": "2026-01-01T00:00:00Z",
                "labels": {"app": "x", "tier": ""},
                "finalizers": ["a", "b"],
            },
            "spec": {"reference": "flunders/other", "referenceType": "Flunder"},
            "status": {},
        }
        self.assertEqual(
            encode(obj, Output("yaml", content_type=YAML), True).decode(),
            "apiVersion: wardle.example.com/v1alpha1\n"
            "kind: Flunder\n"
            "metadata:\n"
            '  creationTimestamp: "2026-01-01T00:00:00Z"\n'
            "  finalizers:\n"
            "  - a\n"
            "  - b\n"
            "  labels:\n"
            "    app: x\n"
            '    tier: ""\n'
            "  name: my-flunder\n"
            "  namespace: default\n"
            '  resourceVersion: "42"\n'
            "  uid: 4e1c6a5e-0000-4000-8000-000000000001\n"
            "spec:\n"
            "  reference: flunders/other\n"
            "  referenceType: Flunder\n"
            "status: {}\n",
        )

    def test_strings_that_would_change_type_are_double_quoted(self) -> None:
        values = ["yes", "n", "On", "null", "~", "1", "0x1F", "1e3", ".5", "1_000",
                  "2026-01-01", "1:20", "-.inf", "true"]
        encoded = encode_yaml({"v": values}).decode()
        self.assertEqual(
            encoded,
            "v:\n" + "".join(f'- "{value}"\n' for value in values),
        )

    def test_plain_and_single_quoted_strings(self) -> None:
        self.assertEqual(
            encode_yaml({"a": "hello world", "b": "a: b", "c": "- x", "d": "<<",
                         "e": "x=1", "f": "2026-13-01"}).decode(),
            "a: hello world\nb: 'a: b'\nc: '- x'\nd: <<\ne: x=1\nf: 2026-13-01\n",
        )

    def test_keys_quoted_like_values(self) -> None:
        self.assertEqual(encode_yaml({"y": 1, "n": 2, "on": 3, "x": 4}).decode(),
                         '"n": 2\n"on": 3\nx: 4\n"y": 1\n')

    def test_natural_key_order(self) -> None:
        """
        go-yaml v2 sorts keys naturally: digit runs by value, non-letters
        before letters, a shorter run of equal value first.
        """
        keys = ["a10", "a2", "B", "a-b", "a.b", "a", "a01", "a1", "_x", "1"]
        lines = encode_yaml(dict.fromkeys(keys, 1)).decode().splitlines()
        self.assertEqual(
            [line.rsplit(": ", 1)[0] for line in lines],
            ["_x", '"1"', "B", "a", "a-b", "a.b", "a1", "a01", "a2", "a10"],
        )

    def test_multiline_literal(self) -> None:
        self.assertEqual(encode_yaml({"m": "a\nb\n"}).decode(), "m: |\n  a\n  b\n")

    def test_long_strings_fold_at_80(self) -> None:
        self.assertEqual(
            encode_yaml({"d": "word " * 20 + "end"}).decode(),
            "d: word word word word word word word word word word word word word word word word\n"
            "  word word word word end\n",
        )

    def test_numbers_and_scalars(self) -> None:
        self.assertEqual(
            encode_yaml({"i": 3, "f": 1.5, "g": 2.0, "e": 1e-7, "m": 1e6 + 0.5,
                         "h": 2**70, "t": True, "z": None, "l": [], "o": {}}).decode(),
            "e: 1e-07\nf: 1.5\ng: 2\nh: 1.1805916207174113e+21\ni: 3\nl: []\n"
            "m: 1.0000005e+06\no: {}\nt: true\nz: null\n",
        )

    def test_unicode_kept(self) -> None:
        self.assertEqual(encode_yaml({"s": "h\u00e9llo"}).decode(), "s: h\u00e9llo\n")

    def test_nested_lists(self) -> None:
        self.assertEqual(
            encode_yaml({"l": [{"a": 1, "b": [1, 2]}, [3]]}).decode(),
            "l:\n- a: 1\n  b:\n  - 1\n  - 2\n- - 3\n",
        )
