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
reproduces them.

What it deliberately does not do: protobuf bodies are refused with 415 (the
wardle types have no protobuf form), and schema-aware decoding (unknown
fields, wrong field types) is the registry's job.  Duplicate keys are not an
error here; they are reported in L{DecodedBody} so the caller can turn them
into C{Warning} headers (C{fieldValidation=Warn}, the default) or a 400
(C{Strict}).
"""

from __future__ import annotations

import base64
import binascii
import calendar
import copy
import json
import math
import re
import struct
from collections.abc import Callable, Iterator
from typing import Any

import attrs
import yaml
import yaml.events as yev

from wardled import apierrors

JSON_MEDIA_TYPE = "application/json"
YAML_MEDIA_TYPE = "application/yaml"

#: The body media types we decode, in the order Kubernetes lists them (it
#: also lists C{application/vnd.kubernetes.protobuf}, which we refuse).
ACCEPTED_BODY_TYPES = [JSON_MEDIA_TYPE, YAML_MEDIA_TYPE]

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1
_UINT64_MAX = 2**64 - 1


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


def _go_json_type(value: Any) -> str:
    """The JSON value kind as Go's C{UnmarshalTypeError} names it."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


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
            f"{prefix}{_go_json_type(obj)} into Go value of type {_FIND_KIND_TYPE}"
        )
    api_version: Any = None
    for key, value in obj.items():
        field = _FIND_KIND_FIELDS.get(key.lower())
        if field is None or value is None:
            continue
        if not isinstance(value, str):
            raise _DecodeError(
                f"{prefix}{_go_json_type(value)} into Go struct field "
                f".{field} of type string"
            )
        if field == "apiVersion":
            api_version = value
    if api_version is not None and api_version.count("/") > 1:
        raise _DecodeError(f"unexpected GroupVersion string: {api_version}")


# --------------------------------------------------------------------------
# JSON


class _JsonConstant(ValueError):
    """Python accepts NaN and Infinity; Go does not."""


def _reject_constant(name: str) -> Any:
    raise _JsonConstant(name)


# Go's messages for the constants Python would accept, wherever they are.
_CONSTANT_ERRORS = {
    "NaN": "invalid character 'N' looking for beginning of value",
    "Infinity": "invalid character 'I' looking for beginning of value",
    "-Infinity": "invalid character 'I' in numeric literal",
}
#: Up to this size a malformed JSON body is re-scanned with Go's scanner for
#: an exact error; above it the wording is derived from Python's error, so a
#: hostile 3 MiB body cannot hold the reactor for long.
EXACT_SCAN_LIMIT = 256 * 1024


def _parse_int(text: str) -> int | float:
    """Integers as Kubernetes' int-preserving decoder keeps them: int64 or float64."""
    if len(text) < 19:
        return int(text)
    if len(text) <= 20:
        number = int(text)
        if _INT64_MIN <= number <= _INT64_MAX:
            return number
    return float(text)


def _decode_json(content: bytes) -> DecodedBody:
    """
    Parse JSON with Go's acceptance rules and error texts, noting duplicates.
    """
    duplicates: list[tuple[dict[str, Any], list[str]]] = []

    def pairs_hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        obj = dict(pairs)
        if len(obj) != len(pairs):
            duplicates.append((obj, _repeated_keys(pairs)))
        return obj

    decoder = json.JSONDecoder(
        object_pairs_hook=pairs_hook,
        parse_int=_parse_int,
        parse_constant=_reject_constant,
    )
    try:
        text = content.decode("utf-8")
        clean = True
    except UnicodeDecodeError:
        # One lone surrogate per bad byte, later one U+FFFD each, as Go does.
        text = content.decode("utf-8", "surrogateescape")
        clean = False
    try:
        obj = decoder.decode(text)
    except _JsonConstant as error:
        raise _DecodeError(_PARSE_ERROR + _CONSTANT_ERRORS[str(error)]) from None
    except (ValueError, RecursionError) as error:
        raise _DecodeError(_PARSE_ERROR + _json_syntax_message(content, text, error)) from None
    if not clean or _SURROGATE_ESCAPE.search(content):
        obj = _replace_lone_surrogates(obj)
        duplicates = [(d, [_scrub(k) for k in keys]) for d, keys in duplicates]
    paths = _duplicate_paths(obj, duplicates)
    return DecodedBody(
        obj, paths, [f"duplicate field {json.dumps(p, ensure_ascii=False)}" for p in paths]
    )


_PARSE_ERROR = "couldn't get version/kind; json parse error: "


def _json_syntax_message(content: bytes, text: str, error: Exception) -> str:
    """
    Go's wording for JSON Python could not parse: exact for bodies up to
    L{EXACT_SCAN_LIMIT}, derived from Python's error position above it.
    """
    if len(content) <= EXACT_SCAN_LIMIT:
        return go_json_syntax_error(content) or "exceeded max depth"
    if isinstance(error, json.JSONDecodeError):
        return _approximate_syntax_error(content, text, error)
    return "exceeded max depth"


_PYTHON_CONTEXTS = {
    "Expecting value": "looking for beginning of value",
    "Expecting property name enclosed in double quotes":
        "looking for beginning of object key string",
    "Expecting ':' delimiter": "after object key",
    "Extra data": "after top-level value",
    "Invalid control character at": "in string literal",
}
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')
_BRACKETS = re.compile(rb"[\[\]{}]")


def _approximate_syntax_error(
    content: bytes, text: str, error: json.JSONDecodeError
) -> str:
    offset = len(text[:error.pos].encode("utf-8", "surrogateescape"))
    if error.msg == "Invalid \\escape":
        offset += 1
        context = "in string escape code"
    elif error.msg == "Invalid \\uXXXX escape":
        offset = _first_non_hex(content, content.rfind(b"\\u", 0, offset + 1) + 2)
        context = "in \\u hexadecimal character escape"
    elif error.msg == "Expecting ',' delimiter":
        inside_array = _innermost_open(content, offset) == b"["
        context = "after array element" if inside_array else "after object key:value pair"
    else:
        context = _PYTHON_CONTEXTS.get(error.msg, "looking for beginning of value")
    if offset >= len(content) or error.msg.startswith("Unterminated string"):
        return "unexpected end of JSON input"
    return f"invalid character {_quote_char(content[offset])} {context}"


def _first_non_hex(content: bytes, start: int) -> int:
    for offset in range(start, min(start + 4, len(content))):
        if content[offset] not in _HEX:
            return offset
    return min(start + 4, len(content))


def _innermost_open(content: bytes, offset: int) -> bytes:
    """The innermost bracket still open before C{offset}."""
    depth = 0
    for bracket in reversed(_BRACKETS.findall(_JSON_STRING.sub(b"", content[:offset]))):
        if bracket in b"]}":
            depth += 1
        elif depth:
            depth -= 1
        else:
            return bytes(bracket)
    return b""


def _repeated_keys(pairs: list[tuple[str, Any]]) -> list[str]:
    seen: set[str] = set()
    repeated: list[str] = []
    for key, _ in pairs:
        if key in seen and key not in repeated:
            repeated.append(key)
        seen.add(key)
    return repeated


def _walk(obj: Any) -> Iterator[tuple[str, Any]]:
    """
    Every container in C{obj} with its field path, parents first.
    """
    stack: list[tuple[str, Any]] = [("", obj)]
    while stack:
        path, value = stack.pop()
        yield path, value
        children: list[tuple[str, Any]] = []
        if isinstance(value, dict):
            for key, child in value.items():
                if isinstance(child, (dict, list)):
                    children.append((f"{path}.{key}" if path else key, child))
        elif isinstance(value, list):
            for index, child in enumerate(value):
                if isinstance(child, (dict, list)):
                    children.append((f"{path}[{index}]", child))
        stack.extend(reversed(children))


def _duplicate_paths(
    obj: Any, duplicates: list[tuple[dict[str, Any], list[str]]]
) -> list[str]:
    if not duplicates:
        return []
    keys_by_id = {id(d): keys for d, keys in duplicates}
    paths: list[str] = []
    for path, value in _walk(obj):
        for key in keys_by_id.get(id(value), ()):
            full = f"{path}.{key}" if path else key
            if full not in paths:
                paths.append(full)
    return paths


_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _scrub(text: str) -> str:
    return _LONE_SURROGATE.sub("\ufffd", text)


def _replace_lone_surrogates(obj: Any) -> Any:
    """
    Go decodes an unpaired C{\\uD800} escape as U+FFFD; Python keeps a lone
    surrogate that cannot even be encoded.  Replace them, keys included.
    """
    if isinstance(obj, str):
        return _scrub(obj)
    if not isinstance(obj, (dict, list)):
        return obj
    for _, container in list(_walk(obj)):
        if isinstance(container, dict):
            items = [(_scrub(k), _scrub(v) if isinstance(v, str) else v)
                     for k, v in container.items()]
            container.clear()
            container.update(items)
        else:
            for index, item in enumerate(container):
                if isinstance(item, str):
                    container[index] = _scrub(item)
    return obj


def _quote_char(byte: int) -> str:
    """Go's C{quoteChar}: how a JSON syntax error names the offending byte."""
    if byte == 0x27:
        return "'\\''"
    if byte == 0x22:
        return "'\"'"
    char = chr(byte)
    short = {7: "\\a", 8: "\\b", 12: "\\f", 10: "\\n", 13: "\\r", 9: "\\t", 11: "\\v",
             0x5C: "\\\\"}
    if byte in short:
        return f"'{short[byte]}'"
    if byte < 0x20 or byte == 0x7F:
        return f"'\\x{byte:02x}'"
    if 0x80 <= byte <= 0xA0 or byte == 0xAD:
        return f"'\\u{byte:04x}'"
    return f"'{char}'"


_WHITESPACE = b" \t\r\n"
_DIGITS = b"0123456789"
_HEX = b"0123456789abcdefABCDEF"
_STRING_RUN = re.compile(rb'[^"\\\x00-\x1f]+')
_MAX_DEPTH = 10000


class _GoJsonScanner:
    """
    Go's C{encoding/json} validity scanner, used only to word errors: Python
    has already failed to parse the input, and clients expect Go's text
    (C{invalid character 'x' looking for beginning of value}).
    """

    def __init__(self) -> None:
        self.stack: list[str] = []  # "key", "value" (inside {}), "array"
        self.state: Callable[[int], None] = self._begin_value
        self.end_top = False
        self.literal = b""
        self.literal_index = 0
        self.hex_left = 0

    def _fail(self, byte: int, context: str) -> None:
        raise _DecodeError(f"invalid character {_quote_char(byte)} {context}")

    def feed(self, data: bytes) -> None:
        index = 0
        length = len(data)
        while index < length:
            if self.state == self._in_string:
                run = _STRING_RUN.match(data, index)
                if run is not None:
                    index = run.end()
                    continue
            self.state(data[index])
            index += 1

    def finish(self) -> None:
        if self.end_top:
            return
        self.state(0x20)
        if not self.end_top:
            raise _DecodeError("unexpected end of JSON input")

    def _push(self, byte: int, kind: str) -> None:
        self.stack.append(kind)
        if len(self.stack) > _MAX_DEPTH:
            self._fail(byte, "exceeded max depth")

    def _begin_value(self, byte: int) -> None:
        if byte in _WHITESPACE:
            return
        if byte == 0x7B:  # {
            self._push(byte, "key")
            self.state = self._begin_string_or_empty
        elif byte == 0x5B:  # [
            self._push(byte, "array")
            self.state = self._begin_value_or_empty
        elif byte == 0x22:
            self.state = self._in_string
        elif byte == 0x2D:
            self.state = self._negative
        elif byte == 0x30:
            self.state = self._zero
        elif 0x31 <= byte <= 0x39:
            self.state = self._integer
        elif byte in b"tfn":
            self.literal = {0x74: b"true", 0x66: b"false", 0x6E: b"null"}[byte]
            self.literal_index = 1
            self.state = self._in_literal
        else:
            self._fail(byte, "looking for beginning of value")

    def _begin_value_or_empty(self, byte: int) -> None:
        if byte in _WHITESPACE:
            return
        if byte == 0x5D:
            self._end_value(byte)
        else:
            self._begin_value(byte)

    def _begin_string_or_empty(self, byte: int) -> None:
        if byte in _WHITESPACE:
            return
        if byte == 0x7D:
            self.stack[-1] = "value"
            self._end_value(byte)
        else:
            self._begin_string(byte)

    def _begin_string(self, byte: int) -> None:
        if byte in _WHITESPACE:
            return
        if byte != 0x22:
            self._fail(byte, "looking for beginning of object key string")
        self.state = self._in_string

    def _end_value(self, byte: int) -> None:
        if not self.stack:
            self.end_top = True
            self.state = self._end_top
            self._end_top(byte)
            return
        if byte in _WHITESPACE:
            self.state = self._end_value
            return
        top = self.stack[-1]
        if top == "key":
            if byte != 0x3A:
                self._fail(byte, "after object key")
            self.stack[-1] = "value"
            self.state = self._begin_value
        elif top == "value":
            if byte == 0x2C:
                self.stack[-1] = "key"
                self.state = self._begin_string
            elif byte == 0x7D:
                self.stack.pop()
                self.state = self._end_value
            else:
                self._fail(byte, "after object key:value pair")
        elif byte == 0x2C:
            self.state = self._begin_value
        elif byte == 0x5D:
            self.stack.pop()
            self.state = self._end_value
        else:
            self._fail(byte, "after array element")

    def _end_top(self, byte: int) -> None:
        if byte not in _WHITESPACE:
            self._fail(byte, "after top-level value")

    def _in_string(self, byte: int) -> None:
        if byte == 0x22:
            self.state = self._end_value
        elif byte == 0x5C:
            self.state = self._in_escape
        elif byte < 0x20:
            self._fail(byte, "in string literal")

    def _in_escape(self, byte: int) -> None:
        if byte in b'bfnrt\\/"':
            self.state = self._in_string
        elif byte == 0x75:
            self.hex_left = 4
            self.state = self._in_unicode_escape
        else:
            self._fail(byte, "in string escape code")

    def _in_unicode_escape(self, byte: int) -> None:
        if byte not in _HEX:
            self._fail(byte, "in \\u hexadecimal character escape")
        self.hex_left -= 1
        if not self.hex_left:
            self.state = self._in_string

    def _negative(self, byte: int) -> None:
        if byte == 0x30:
            self.state = self._zero
        elif 0x31 <= byte <= 0x39:
            self.state = self._integer
        else:
            self._fail(byte, "in numeric literal")

    def _integer(self, byte: int) -> None:
        if byte not in _DIGITS:
            self._zero(byte)

    def _zero(self, byte: int) -> None:
        if byte == 0x2E:
            self.state = self._dot
        elif byte in b"eE":
            self.state = self._exponent
        else:
            self._end_value(byte)

    def _dot(self, byte: int) -> None:
        if byte not in _DIGITS:
            self._fail(byte, "after decimal point in numeric literal")
        self.state = self._fraction

    def _fraction(self, byte: int) -> None:
        if byte in b"eE":
            self.state = self._exponent
        elif byte not in _DIGITS:
            self._end_value(byte)

    def _exponent(self, byte: int) -> None:
        if byte in b"+-":
            self.state = self._exponent_sign
        else:
            self._exponent_sign(byte)

    def _exponent_sign(self, byte: int) -> None:
        if byte not in _DIGITS:
            self._fail(byte, "in exponent of numeric literal")
        self.state = self._exponent_digits

    def _exponent_digits(self, byte: int) -> None:
        if byte not in _DIGITS:
            self._end_value(byte)

    def _in_literal(self, byte: int) -> None:
        expected = self.literal[self.literal_index]
        if byte != expected:
            name = self.literal.decode("ascii")
            self._fail(byte, f"in literal {name} (expecting {_quote_char(expected)})")
        self.literal_index += 1
        if self.literal_index == len(self.literal):
            self.state = self._end_value


def go_json_syntax_error(data: bytes) -> str | None:
    """
    The message Go's C{json.Unmarshal} gives for a syntax error in C{data}.

    @param data: a JSON document.
    @return: e.g. C{unexpected end of JSON input}, or L{None} if Go would
        accept the syntax.
    """
    scanner = _GoJsonScanner()
    try:
        scanner.feed(data)
        scanner.finish()
    except _DecodeError as error:
        return str(error)
    return None


# --------------------------------------------------------------------------
# YAML: go-yaml v2 scalar resolution, shared with the YAML encoder.

NULL, BOOL, INT, FLOAT, STR, TIMESTAMP = (
    "null", "bool", "int", "float", "str", "timestamp")

_RESOLVE_MAP: dict[str, tuple[str, Any]] = {}
for _words, _entry in (
    ("y Y yes Yes YES true True TRUE on On ON", (BOOL, True)),
    ("n N no No NO false False FALSE off Off OFF", (BOOL, False)),
    ("~ null Null NULL", (NULL, None)),
    (".nan .NaN .NAN", (FLOAT, math.nan)),
    (".inf .Inf .INF +.inf +.Inf +.INF", (FLOAT, math.inf)),
    ("-.inf -.Inf -.INF", (FLOAT, -math.inf)),
):
    for _word in _words.split():
        _RESOLVE_MAP[_word] = _entry

_YAML_STYLE_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")
_DOT_FLOAT = re.compile(r"\.[0-9]+([eE][-+]?[0-9]+)?")
_GO_INT = re.compile(
    r"(?P<sign>[-+]?)(?:0[xX](?P<hex>[0-9a-fA-F]+)|0[bB](?P<bin>[01]+)"
    r"|0[oO](?P<oct>[0-7]+)|(?P<legacy>0[0-7]*)|(?P<dec>[1-9][0-9]*))"
)
_TIMESTAMP = re.compile(
    r"(\d{4})-(\d{1,2})-(\d{1,2})"
    r"(?:[Tt](\d{1,2}):(\d{1,2}):(\d{1,2})(?:[.,]\d+)?(?:Z|[-+](\d\d):(\d\d))"
    r"| (\d{1,2}):(\d{1,2}):(\d{1,2})(?:[.,]\d+)?)?"
)
_BASE60_FLOAT = re.compile(r"[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?")


def _go_parse_int(text: str) -> int | None:
    """Go's C{strconv.ParseInt(text, 0, 64)}, falling back to C{ParseUint}."""
    match = _GO_INT.fullmatch(text)
    if match is None:
        return None
    groups = match.groupdict()
    if groups["hex"] is not None:
        value = int(groups["hex"], 16)
    elif groups["bin"] is not None:
        value = int(groups["bin"], 2)
    elif groups["oct"] is not None:
        value = int(groups["oct"], 8)
    elif groups["legacy"] is not None:
        value = int(groups["legacy"], 8)
    else:
        value = int(groups["dec"])
    if match.group("sign") == "-":
        value = -value
    if _INT64_MIN <= value <= _INT64_MAX:
        return value
    if match.group("sign") == "" and value <= _UINT64_MAX:
        return value
    return None


def _go_parse_float(text: str) -> float | None:
    value = float(text)
    return value if math.isfinite(value) else None


def _is_go_yaml_timestamp(text: str) -> bool:
    """go-yaml v2's C{parseTimestamp}: the four layouts Go's C{time.Parse} takes."""
    match = _TIMESTAMP.fullmatch(text)
    if match is None:
        return False
    year, month, day = (int(g) for g in match.group(1, 2, 3))
    if not 1 <= month <= 12 or not 1 <= day <= calendar.monthrange(max(year, 1), month)[1]:
        return False
    clock = match.group(4, 5, 6) if match.group(4) else match.group(9, 10, 11)
    if clock[0] is not None:
        hour, minute, second = (int(g) for g in clock)
        if hour > 23 or minute > 59 or second > 59:
            return False
    zone_hour = match.group(7)
    return zone_hour is None or int(zone_hour) <= 24


def _hint(text: str) -> str:
    first = text[0]
    if first in "+-":
        return "S"
    if first.isascii() and first.isdigit():
        return "D"
    if first in "yYnNtTfFoO~":
        return "M"
    if first == ".":
        return "."
    return ""


def resolve_plain_scalar(text: str, *, timestamps: bool = True) -> tuple[str, Any]:
    """
    What go-yaml v2 reads an unquoted scalar as (its C{resolve("", text)}).

    @param text: the scalar's text.
    @param timestamps: whether timestamps are recognised (go-yaml skips them
        when an explicit tag other than C{!!timestamp} is given).
    @return: C{(kind, value)} where kind is one of L{NULL}, L{BOOL}, L{INT},
        L{FLOAT}, L{STR} or L{TIMESTAMP}.  A timestamp's value is the text
        itself: go-yaml v2 hands timestamps to C{interface{}} targets as
        strings, which is why C{2026-01-01T00:00:00Z} survives a YAML body
        unchanged.
    """
    if not text:
        return NULL, None
    hint = _hint(text)
    if not hint:
        return STR, text
    if text in _RESOLVE_MAP:
        return _RESOLVE_MAP[text]
    if hint == "M":
        return STR, text
    if hint == ".":
        if _DOT_FLOAT.fullmatch(text):
            value = _go_parse_float(text)
            if value is not None:
                return FLOAT, value
        return STR, text
    if timestamps and _is_go_yaml_timestamp(text):
        return TIMESTAMP, text
    plain = text.replace("_", "")
    number = _go_parse_int(plain)
    if number is not None:
        return INT, number
    if _YAML_STYLE_FLOAT.fullmatch(plain):
        value = _go_parse_float(plain)
        if value is not None:
            return FLOAT, value
    return STR, text


def is_base60_float(text: str) -> bool:
    """
    go-yaml v2's C{isBase60Float}: strings like C{1:20} that YAML 1.1 readers
    take as numbers, so the encoder quotes them.
    """
    if not text or ":" not in text or not (text[0] in "+-" or text[0].isdigit()):
        return False
    return _BASE60_FLOAT.fullmatch(text) is not None


# --------------------------------------------------------------------------
# YAML → JSON-able object, as sigs.k8s.io/yaml.YAMLToJSON does it.

try:
    _Loader: Any = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - PyYAML built without libyaml
    _Loader = yaml.SafeLoader

_CORE_TAG = "tag:yaml.org,2002:"
_MERGE_TAG = _CORE_TAG + "merge"
_ALIAS_RATIO_LOW = 400_000
_ALIAS_RATIO_HIGH = 4_000_000


def _allowed_alias_ratio(decode_count: int) -> float:
    """go-yaml v2's limit on how much of a document may come from aliases."""
    if decode_count <= _ALIAS_RATIO_LOW:
        return 0.99
    if decode_count >= _ALIAS_RATIO_HIGH:
        return 0.10
    span = _ALIAS_RATIO_HIGH - _ALIAS_RATIO_LOW
    return 0.99 - 0.89 * ((decode_count - _ALIAS_RATIO_LOW) / span)


def _go_repr(value: Any) -> str:
    """A scalar as Go's C{%#v} prints it, for error texts."""
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, float):
        return format_go_float(value, "g")
    if isinstance(value, (dict, list)):
        return _go_type_name(value) + "{...}"
    if value > _INT64_MAX:
        return hex(value)
    return str(value)


def _go_type_name(value: Any) -> str:
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, float):
        return "float64"
    if isinstance(value, int):
        return "int" if value <= _INT64_MAX else "uint64"
    if isinstance(value, list):
        return "[]interface {}"
    if isinstance(value, dict):
        return "map[interface {}]interface {}"
    return "string"


_SPECIAL_FLOAT_KEYS = {"+Inf": ".inf", "-Inf": "-.inf", "NaN": ".nan"}


def _json_key(key: Any, value: Any) -> str:
    """A YAML map key as C{convertToJSONableObject} turns it into a string."""
    if isinstance(key, str):
        return key
    if isinstance(key, bool):
        return "true" if key else "false"
    if isinstance(key, int) and key <= _INT64_MAX:
        return str(key)
    if isinstance(key, float):
        text = format_go_float(key, "g", bits=32)
        return _SPECIAL_FLOAT_KEYS.get(text, text)
    raise _DecodeError(
        f"unsupported map key of type: {_go_type_name(key)}, key: {_go_repr(key)}, "
        f"value: {_go_repr(value)}"
    )


def _json_number(value: Any) -> Any:
    """
    A YAML scalar after Go's JSON round trip (C{json.Marshal}, then the
    int-preserving decode): integral numbers that fit int64 are integers,
    other numbers floats, and NaN or Inf fail as C{json.Marshal} fails.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return value
    if isinstance(value, int):
        return value if value <= _INT64_MAX else float(value)
    if not math.isfinite(value):
        raise _DecodeError(f"json: unsupported value: {format_go_float(value, 'g')}")
    if value.is_integer() and abs(value) < 1e21:
        number = int(value)
        if _INT64_MIN <= number <= _INT64_MAX:
            return number
    return value


@attrs.define
class _Frame:
    """A mapping or sequence being built."""

    value: Any
    path: str
    line: int
    anchor: str | None
    start_count: int
    seen: set[tuple[str, Any]] = attrs.field(factory=set)
    key: Any = None
    key_is_merge: bool = False
    has_key: bool = False


@attrs.define
class _Anchor:
    value: Any
    decodes: int
    open: bool = True


class _YamlReader:
    """
    Builds the first document of a YAML stream from libyaml's events with
    go-yaml v2's rules: scalar resolution, C{<<} merges, alias limits, and
    the duplicate keys its strict mode reports.  Building from events (not
    PyYAML's recursive composer) keeps deep nesting from exhausting the
    stack.
    """

    def __init__(self, content: bytes) -> None:
        self.parser = _Loader(content)
        self.stack: list[_Frame] = []
        self.anchors: dict[str, _Anchor] = {}
        self.decode_count = 0
        self.alias_count = 0
        self.duplicate_paths: list[str] = []
        self.duplicate_lines: list[str] = []
        self.result: Any = None
        self.done = False

    def read(self) -> Any:
        """
        @return: the document as JSON-able Python data (L{None} if empty).
        @raise _DecodeError: with go-yaml's wording.
        """
        try:
            self._run()
        except yaml.MarkedYAMLError as error:
            raise _DecodeError(_go_yaml_parse_message(error)) from None
        except yaml.YAMLError as error:
            reason = getattr(error, "reason", None) or str(error)
            raise _DecodeError(f"yaml: {reason}") from None
        finally:
            self.parser.dispose()
        return self.result

    def _run(self) -> None:
        handlers: dict[type, Callable[[Any], None]] = {
            yev.ScalarEvent: self._scalar,
            yev.SequenceStartEvent: self._open,
            yev.MappingStartEvent: self._open,
            yev.SequenceEndEvent: self._close,
            yev.MappingEndEvent: self._close,
            yev.AliasEvent: self._alias,
        }
        while not self.done and self.parser.check_event():
            event = self.parser.get_event()
            handler = handlers.get(type(event))
            if handler is not None:
                handler(event)

    def _awaiting_key(self) -> bool:
        return bool(self.stack) and isinstance(self.stack[-1].value, dict) \
            and not self.stack[-1].has_key

    def _child_path(self) -> str:
        if not self.stack:
            return ""
        frame = self.stack[-1]
        if isinstance(frame.value, list):
            return f"{frame.path}[{len(frame.value)}]"
        if not frame.has_key or frame.key_is_merge:
            return frame.path
        key = _json_key(frame.key, None)
        return f"{frame.path}.{key}" if frame.path else key

    def _count(self, decodes: int, aliased: bool) -> None:
        self.decode_count += decodes
        if aliased:
            self.alias_count += decodes
        if (
            self.alias_count > 100
            and self.decode_count > 1000
            and self.alias_count / self.decode_count
            > _allowed_alias_ratio(self.decode_count)
        ):
            raise _DecodeError("yaml: document contains excessive aliasing")

    def _scalar(self, event: yev.ScalarEvent) -> None:
        self._count(1, False)
        plain = bool(event.implicit[0]) and event.tag is None
        line = _line_of(event)
        if self._awaiting_key() and event.value == "<<" and (
                plain or event.tag == _MERGE_TAG):
            self._deliver("<<", line, is_merge=True)
            return
        value = _scalar_value(event.value, event.tag, plain)
        if event.anchor:
            self.anchors[event.anchor] = _Anchor(value, 1, open=False)
        self._deliver(value, line)

    def _open(self, event: Any) -> None:
        self._count(1, False)
        if len(self.stack) >= _MAX_DEPTH:
            raise _DecodeError(f"yaml: exceeded max depth of {_MAX_DEPTH}")
        value: Any = [] if isinstance(event, yev.SequenceStartEvent) else {}
        if event.anchor:
            self.anchors[event.anchor] = _Anchor(value, 0)
        self.stack.append(_Frame(
            value, self._child_path(), _line_of(event), event.anchor,
            self.decode_count - 1,
        ))

    def _close(self, event: Any) -> None:
        frame = self.stack.pop()
        if frame.anchor is not None:
            anchor = self.anchors[frame.anchor]
            anchor.decodes = self.decode_count - frame.start_count
            anchor.open = False
        self._deliver(frame.value, frame.line)

    def _alias(self, event: yev.AliasEvent) -> None:
        anchor = self.anchors.get(event.anchor or "")
        if anchor is None:
            raise _DecodeError(f"yaml: unknown anchor '{event.anchor}' referenced")
        if anchor.open:
            raise _DecodeError(f"yaml: anchor '{event.anchor}' value contains itself")
        self._count(1, False)
        self._count(anchor.decodes, True)
        self._deliver(copy.deepcopy(anchor.value), _line_of(event))

    def _deliver(self, value: Any, line: int, is_merge: bool = False) -> None:
        if not self.stack:
            self.result = _json_number(value)
            self.done = True
            return
        frame = self.stack[-1]
        if isinstance(frame.value, list):
            frame.value.append(_json_number(value))
        elif not frame.has_key:
            if isinstance(value, (dict, list)):
                raise _DecodeError(f"yaml: invalid map key: {_go_repr(value)}")
            frame.key, frame.key_is_merge, frame.has_key = value, is_merge, True
        else:
            frame.has_key = False
            if frame.key_is_merge:
                _merge_into(frame.value, value)
            else:
                self._set_entry(frame, value, line)

    def _set_entry(self, frame: _Frame, value: Any, line: int) -> None:
        identity = (_go_type_name(frame.key), frame.key)
        key = _json_key(frame.key, value)
        if identity in frame.seen:
            path = f"{frame.path}.{key}" if frame.path else key
            if path not in self.duplicate_paths:
                self.duplicate_paths.append(path)
            self.duplicate_lines.append(
                f"line {line}: key {_go_repr(frame.key)} already set in map"
            )
        frame.seen.add(identity)
        frame.value[key] = _json_number(value)


def _line_of(event: Any) -> int:
    """The 1-based line an event starts on, as go-yaml numbers nodes."""
    mark = event.start_mark
    return mark.line + 1 if mark is not None else 0


def _scalar_value(text: str, tag: str | None, plain: bool) -> Any:
    """
    A scalar's value as go-yaml v2 decodes it into C{interface{}}: plain
    scalars are resolved, quoted ones are strings, explicit core tags must
    agree with the text, other tags leave the text as a string.
    """
    if plain:
        return resolve_plain_scalar(text)[1]
    if tag is None or not tag.startswith(_CORE_TAG):
        return text
    wanted = tag[len(_CORE_TAG):]
    if wanted == "binary":
        return _decode_binary(text)
    if wanted not in (NULL, BOOL, INT, FLOAT, TIMESTAMP):
        return text
    kind, value = resolve_plain_scalar(text, timestamps=wanted == TIMESTAMP)
    if kind == wanted:
        return value
    if wanted == FLOAT and kind == INT:
        return float(value)
    raise _DecodeError(f"yaml: cannot decode !!{kind} `{text}` as a !!{wanted}")


def _merge_into(target: dict[str, Any], source: Any) -> None:
    """go-yaml v2's C{<<} merge: a map, or a list of maps (earlier ones win)."""
    if isinstance(source, dict):
        target.update(source)
        return
    if isinstance(source, list) and all(isinstance(item, dict) for item in source):
        for item in reversed(source):
            target.update(item)
        return
    raise _DecodeError("yaml: map merge requires map or sequence of maps as the value")


def _decode_binary(text: str) -> str:
    try:
        raw = base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise _DecodeError("yaml: !!binary value contains invalid base64 data") from None
    return raw.decode("utf-8", "replace")


# Problems newer libyaml words differently from go-yaml's older port.
_NEWER_LIBYAML_PROBLEMS = {
    "found a tab character that violates indentation":
        "found character that cannot start any token",
}


def _go_yaml_parse_message(error: yaml.MarkedYAMLError) -> str:
    """
    go-yaml's wording of a syntax error, C{yaml: line N: <problem>}, with
    its quirk that parser (not scanner) errors report the 0-based line.
    """
    problem = error.problem or "unknown problem parsing YAML content"
    problem = _NEWER_LIBYAML_PROBLEMS.get(problem, problem)
    problem_line = error.problem_mark.line if error.problem_mark else 0
    context_line = error.context_mark.line if error.context_mark else 0
    line = 0
    if problem_line:
        line = problem_line + (1 if isinstance(error, yaml.scanner.ScannerError) else 0)
    elif context_line:
        line = context_line
    where = f"line {line}: " if line else ""
    return f"yaml: {where}{problem}"


def _decode_yaml(content: bytes) -> DecodedBody:
    """
    YAML body → JSON object, as C{sigs.k8s.io/yaml.YAMLToJSON} does it
    (first document only, as go-yaml reads it), plus the duplicates its
    strict twin C{YAMLToJSONStrict} reports.
    """
    reader = _YamlReader(content)
    obj = reader.read()
    strict_errors: list[str] = []
    if reader.duplicate_lines:
        strict_errors.append(
            "yaml: unmarshal errors:\n  " + "\n  ".join(reader.duplicate_lines)
        )
    return DecodedBody(obj, reader.duplicate_paths, strict_errors)


_YAML_WARNING_PREFIXES = (
    "yaml: unmarshal errors:\n",
    "error converting YAML to JSON: yaml: unmarshal errors:\n",
)


def _split_yaml_warnings(error: str) -> list[str]:
    for prefix in _YAML_WARNING_PREFIXES:
        if error.startswith(prefix):
            return [line.strip() for line in error[len(prefix):].split("\n")]
    return [error]


# --------------------------------------------------------------------------
# Go's float formatting (strconv.FormatFloat with precision -1).


def _float32(value: float) -> float:
    return float(struct.unpack("f", struct.pack("f", value))[0])


def _shortest_text(value: float, bits: int) -> str:
    """The shortest text that reads back as C{value} (as a float32 if asked)."""
    if bits == 64:
        return repr(value)
    target = _float32(value)
    for precision in range(9):
        text = f"{target:.{precision}e}"
        if _float32(float(text)) == target:
            return text
    return repr(target)  # pragma: no cover - nine digits always suffice


def _shortest_digits(value: float, bits: int) -> tuple[str, int]:
    """
    The shortest decimal digits of a positive C{value} and where the decimal
    point goes: value = 0.DIGITS × 10**point, as Go's C{decimalSlice} has it.
    """
    if value == 0:
        return "0", 1
    mantissa, _, exponent = _shortest_text(value, bits).partition("e")
    whole, _, fraction = mantissa.partition(".")
    all_digits = whole + fraction
    significant = all_digits.lstrip("0")
    point = len(whole) - (len(all_digits) - len(significant)) + int(exponent or 0)
    return significant.rstrip("0") or "0", point


def format_go_float(value: float, fmt: str, bits: int = 64) -> str:
    """
    C{strconv.FormatFloat(value, fmt, -1, bits)} for C{fmt} C{'g'}, C{'e'} or
    C{'f'}.

    @param value: the number.
    @param fmt: Go's format verb.
    @param bits: 64, or 32 to round to float32 first.
    @return: the text, e.g. C{1e+06} for C{('g', 1e6)}.
    """
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    sign = "-" if math.copysign(1.0, value) < 0 else ""
    digits, point = _shortest_digits(abs(value), bits)
    exp = point - 1
    if fmt == "e" or (fmt == "g" and (exp < -4 or exp >= 6)):
        mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{sign}{mantissa}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    if point <= 0:
        return f"{sign}0.{'0' * -point}{digits}"
    if point >= len(digits):
        return f"{sign}{digits}{'0' * (point - len(digits))}"
    return f"{sign}{digits[:point]}.{digits[point:]}"
