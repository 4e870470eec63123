# -*- test-case-name: tests.test_body -*-
"""
Request bodies, read the way k8s.io/apiserver reads them.

A create or update handler in the Go reference picks the input serializer
from C{Content-Type} (C{negotiation.NegotiateInputSerializer}), reads at most
3 MiB, then decodes: YAML is first turned into JSON by C{sigs.k8s.io/yaml}
(go-yaml v2 rules: C{yes}/C{on}/C{y} are booleans, timestamps stay strings,
non-string keys become strings), and the JSON is probed for C{apiVersion} and
C{kind} by C{json.SimpleMetaFactory.Interpret} before the typed decode.  Each
step has its own error text, and clients see those texts, so this module
reproduces them.  The Go-compatible parsers behind the two media types are
their own modules: L{wardled.api.gojson} and L{wardled.api.goyaml}.

What it deliberately does not do: protobuf bodies are refused with 415 (the
wardle types have no protobuf form), and schema-aware decoding (unknown
fields, wrong field types) is the registry's job.  Duplicate keys are not an
error here; they are reported in L{DecodedBody} so the caller can turn them
into C{Warning} headers (C{fieldValidation=Warn}, the default) or a 400
(C{Strict}).
"""

from __future__ import annotations

import binascii
import json
import re
from typing import Any

import attrs

from wardled import apierrors
from wardled.api import gojson, goyaml

# Names that lived here before the parsers had their own modules; the YAML
# encoder (wardled.api.negotiate) and the tests import them from here.
from wardled.api.gojson import EXACT_SCAN_LIMIT, go_json_syntax_error
from wardled.api.goyaml import (
    BOOL,
    FLOAT,
    INT,
    NULL,
    STR,
    TIMESTAMP,
    format_go_float,
    is_base60_float,
    resolve_plain_scalar,
)
from wardled.apis.schema import go_json_type

__all__ = [
    "ACCEPTED_BODY_TYPES",
    "BOOL",
    "EXACT_SCAN_LIMIT",
    "FLOAT",
    "INT",
    "JSON_MEDIA_TYPE",
    "NULL",
    "STR",
    "TIMESTAMP",
    "YAML_MEDIA_TYPE",
    "DecodedBody",
    "body_media_type",
    "format_go_float",
    "go_json_syntax_error",
    "is_base60_float",
    "parse_content_type",
    "read_body",
    "resolve_plain_scalar",
    "summarize_body",
]

JSON_MEDIA_TYPE = "application/json"
YAML_MEDIA_TYPE = "application/yaml"

#: The body media types we decode, in the order Kubernetes lists them (it
#: also lists C{application/vnd.kubernetes.protobuf}, which we refuse).
ACCEPTED_BODY_TYPES = [JSON_MEDIA_TYPE, YAML_MEDIA_TYPE]


@attrs.frozen
class DecodedBody:
    """
    A decoded request body.

    @ivar obj: the body as a JSON object.  A JSON C{null} body (or an empty
        YAML document) decodes to C{{}}, as Kubernetes decodes it into an
        empty object.
    @ivar duplicate_fields: field paths that appeared more than once, e.g.
        C{metadata.name} or C{spec.items[0].name}; the last value won.
    @ivar strict_errors: the errors Kubernetes' strict decoder reports for
        those duplicates, verbatim: C{duplicate field "metadata.name"} for
        JSON, one C{yaml: unmarshal errors:} text for YAML.  With
        C{fieldValidation=Strict} the 400 message is C{<Kind> in version
        "<v>" cannot be handled as a <Kind>: strict decoding error: } followed
        by these (and any unknown-field errors) joined with C{", "}.
    """

    obj: dict[str, Any]
    duplicate_fields: list[str] = attrs.field(factory=list)
    strict_errors: list[str] = attrs.field(factory=list)

    def warnings(self) -> list[str]:
        """
        The C{Warning} texts for C{fieldValidation=Warn}, as
        C{addStrictDecodingWarnings} splits them: one per JSON duplicate, one
        per C{line N: ...} of a YAML error.
        """
        texts: list[str] = []
        for error in self.strict_errors:
            texts.extend(_split_yaml_warnings(error))
        return texts


class _DecodeError(Exception):
    """
    A body that cannot be decoded; the message is the Go error text.
    """


def read_body(
    content: bytes,
    content_type: str | None,
    *,
    expected_kind: str | None = None,
) -> DecodedBody:
    """
    Decode a create/update request body.

    Checks run in the reference's order: media type (415), size (413), then
    decoding (400).

    @param content: the raw body.
    @param content_type: the C{Content-Type} header, or L{None}.  Missing or
        empty means JSON, as in Kubernetes.  Parameters such as C{charset}
        are ignored, as in Kubernetes.
    @param expected_kind: the kind the endpoint decodes into (C{Flunder}).
        When given, a decode failure is worded as Kubernetes' handler words
        it: C{the object provided is unrecognized (must be of type Flunder):
        <error> (<summary of the body>)}.  Without it the message is the bare
        decoder error.
    @return: the decoded body.  A JSON C{null} (or empty YAML) body is
        C{{}}, since Kubernetes decodes it into an empty object.
    @raise wardled.apierrors.StatusError: 415, 413 or 400.
    """
    media_type = body_media_type(content_type)
    if len(content) > apierrors.MAX_BODY_BYTES:
        raise apierrors.request_entity_too_large()
    try:
        if media_type == YAML_MEDIA_TYPE:
            decoded = _decode_yaml(content)
        else:
            decoded = _decode_json(content)
        _interpret(decoded.obj)
    except _DecodeError as error:
        raise apierrors.bad_request(
            _decode_failure_message(str(error), content, expected_kind)
        ) from None
    if decoded.obj is None:
        return attrs.evolve(decoded, obj={})
    return decoded


def body_media_type(content_type: str | None) -> str:
    """
    The media type a request body is decoded as.

    @param content_type: the C{Content-Type} header, or L{None}.
    @return: L{JSON_MEDIA_TYPE} or L{YAML_MEDIA_TYPE}.
    @raise wardled.apierrors.StatusError: 415 for anything else, including a
        malformed header and protobuf.
    """
    if not content_type:
        return JSON_MEDIA_TYPE
    media_type = parse_content_type(content_type)
    if media_type in ACCEPTED_BODY_TYPES:
        return media_type
    raise apierrors.unsupported_media_type(ACCEPTED_BODY_TYPES)


# RFC 2045 token characters, as Go's mime package checks them.
_TOKEN = r"[!#$%&'*+\-.0-9A-Z^_`a-z|~]+"
_TOKEN_RE = re.compile(_TOKEN)
_PARAM_RE = re.compile(
    r"\s*;\s*(" + _TOKEN + r")\s*=\s*(?:" + _TOKEN + r'|"(?:[^"\\]|\\.)*")'
)
_TRAILING_RE = re.compile(r"\s*(?:;\s*)?")


def parse_content_type(content_type: str) -> str | None:
    """
    The lower-cased C{type/subtype} of a C{Content-Type} value, validated
    like Go's C{mime.ParseMediaType}.

    @param content_type: the header value.
    @return: the media type, or L{None} if the header is malformed.
    """
    base, _, params = content_type.partition(";")
    media_type = base.strip().lower()
    major, slash, minor = media_type.partition("/")
    if not _TOKEN_RE.fullmatch(major):
        return None
    if slash and not _TOKEN_RE.fullmatch(minor):
        return None
    if params and not _params_are_valid(content_type[len(base):]):
        return None
    return media_type


def _params_are_valid(text: str) -> bool:
    position = 0
    seen: set[str] = set()
    while True:
        match = _PARAM_RE.match(text, position)
        if match is None:
            break
        name = match.group(1).lower()
        if name in seen:
            return False
        seen.add(name)
        position = match.end()
    return _TRAILING_RE.fullmatch(text, position) is not None


def _decode_failure_message(
    error: str, content: bytes, expected_kind: str | None
) -> str:
    """
    Kubernetes' C{transformDecodeError} wording for an undecodable body.
    """
    if expected_kind is None:
        return error
    return (
        f"the object provided is unrecognized (must be of type {expected_kind}): "
        f"{error} ({summarize_body(content)})"
    )


def summarize_body(content: bytes, max_length: int = 30) -> str:
    """
    Kubernetes' C{summarizeData}: a JSON object's first bytes as text,
    anything else as hex.

    @param content: the raw body.
    @param max_length: how many bytes to show before C{" ..."}.
    @return: the summary.
    """
    if not content:
        return "<empty>"
    head = content[:max_length]
    more = " ..." if len(content) > max_length else ""
    if content[:1] == b"{":
        return head.decode("utf-8", "replace") + more
    return binascii.hexlify(head).decode("ascii") + more


# --------------------------------------------------------------------------
# Interpret: the apiVersion/kind probe every decode starts with.

_FIND_KIND_TYPE = (
    'struct { APIVersion string "json:\\"apiVersion,omitempty\\""; '
    'Kind string "json:\\"kind,omitempty\\"" }'
)


_FIND_KIND_FIELDS = {"apiversion": "apiVersion", "kind": "kind"}


def _interpret(obj: Any) -> None:
    """
    Fail as C{SimpleMetaFactory.Interpret} fails: the body must be a JSON
    object (or null) whose C{apiVersion} and C{kind} are strings (matched
    case-insensitively, as Go's C{encoding/json} matches struct fields), and
    C{apiVersion} has at most one C{/}.
    """
    prefix = "couldn't get version/kind; json parse error: json: cannot unmarshal "
    if obj is None:
        return
    if not isinstance(obj, dict):
        raise _DecodeError(
            f"{prefix}{go_json_type(obj)} into Go value of type {_FIND_KIND_TYPE}"
        )
    api_version: Any = None
    for key, value in obj.items():
        field = _FIND_KIND_FIELDS.get(key.lower())
        if field is None or value is None:
            continue
        if not isinstance(value, str):
            raise _DecodeError(
                f"{prefix}{go_json_type(value)} into Go struct field "
                f".{field} of type string"
            )
        if field == "apiVersion":
            api_version = value
    if api_version is not None and api_version.count("/") > 1:
        raise _DecodeError(f"unexpected GroupVersion string: {api_version}")


# --------------------------------------------------------------------------
# The two decoders, worded as Kubernetes' serializers word their failures.

_PARSE_ERROR = "couldn't get version/kind; json parse error: "


def _decode_json(content: bytes) -> DecodedBody:
    """
    Parse JSON with Go's acceptance rules and error texts, noting duplicates
    as the strict JSON decoder reports them.
    """
    try:
        obj, paths = gojson.loads(content)
    except gojson.GoJsonError as error:
        raise _DecodeError(_PARSE_ERROR + str(error)) from None
    return DecodedBody(
        obj, paths, [f"duplicate field {json.dumps(p, ensure_ascii=False)}" for p in paths]
    )


def _decode_yaml(content: bytes) -> DecodedBody:
    """
    YAML body → JSON object, as C{sigs.k8s.io/yaml.YAMLToJSON} does it
    (first document only, as go-yaml reads it), plus the duplicates its
    strict twin C{YAMLToJSONStrict} reports.
    """
    try:
        document = goyaml.yaml_to_json(content)
    except goyaml.GoYamlError as error:
        raise _DecodeError(str(error)) from None
    strict_errors: list[str] = []
    if document.duplicate_lines:
        strict_errors.append(
            "yaml: unmarshal errors:\n  " + "\n  ".join(document.duplicate_lines)
        )
    return DecodedBody(document.obj, document.duplicate_paths, strict_errors)


_YAML_WARNING_PREFIXES = (
    "yaml: unmarshal errors:\n",
    "error converting YAML to JSON: yaml: unmarshal errors:\n",
)


def _split_yaml_warnings(error: str) -> list[str]:
    for prefix in _YAML_WARNING_PREFIXES:
        if error.startswith(prefix):
            return [line.strip() for line in error[len(prefix):].split("\n")]
    return [error]
