# -*- test-case-name: tests.test_negotiate -*-
"""
Response media types: C{Accept} negotiation, pretty printing and encoding,
as k8s.io/apiserver does them.

The Go reference negotiates with C{negotiation.NegotiateOutputMediaType}:
the C{Accept} clauses are parsed and ordered by C{goautoneg} (whose order is
q-value first, then specific types before wildcards), and the first clause
that names a serializer the server has, with parameters the endpoint allows
(C{as=Table;g=meta.k8s.io;v=v1}, C{stream=watch}, C{pretty=1}...), wins.
Nothing acceptable is a 406.  The response's C{Content-Type} is the
serializer's plain media type (C{application/json} even for a Table): the
C{as=...} parameters are not echoed for resource responses.

We serve JSON and YAML only.  Kubernetes also offers protobuf, but the wardle
types have no protobuf form (the reference fails with a 500 while encoding),
so we do not offer it: a protobuf-only C{Accept} gets a clean 406 that lists
what we do serve, and C{application/vnd.kubernetes.protobuf,
application/json} falls through to JSON.

Encoding matches Go byte for byte where clients can see it: compact JSON is
C{json.Encoder.Encode} output (no spaces, trailing newline, C{<>&} escaped as
C{\\u003c} etc.), pretty JSON is C{json.MarshalIndent(obj, "", "  ")} (no
trailing newline), YAML is C{sigs.k8s.io/yaml.JSONToYAML} output (go-yaml
v2: keys in its natural sort order, 80-column folding, strings quoted when
go-yaml would read them back as something else).
"""

from __future__ import annotations

import functools
import io
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from functools import cmp_to_key
from typing import Any

import attrs
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.resolver import BaseResolver

from wardled import apierrors
from wardled.api.body import STR, format_go_float, is_base60_float, resolve_plain_scalar

try:
    from yaml.cyaml import CEmitter as _EmitterBase  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - PyYAML built without libyaml
    from yaml.emitter import Emitter
    from yaml.serializer import Serializer

    class _EmitterBase(Emitter, Serializer):  # type: ignore[no-redef]
        def __init__(self, stream: Any, **options: Any) -> None:
            Emitter.__init__(self, stream, **options)
            Serializer.__init__(self)


JSON = "application/json"
YAML = "application/yaml"
META_GROUP = "meta.k8s.io"

#: What a 406 lists: the media types we can produce.
SERVED_MEDIA_TYPES = [JSON, YAML]
#: The name the HTTP layer uses for L{SERVED_MEDIA_TYPES}.
SUPPORTED_MEDIA_TYPES = SERVED_MEDIA_TYPES
#: What a 406 for a watch lists: the stream media types we can produce.
STREAM_MEDIA_TYPES = [JSON + ";stream=watch"]

TABLE = "Table"
PARTIAL_OBJECT_METADATA = "PartialObjectMetadata"
PARTIAL_OBJECT_METADATA_LIST = "PartialObjectMetadataList"
_META_VERSIONS = ("v1", "v1beta1")
_SERIALIZERS = (("json", "application", "json", JSON), ("yaml", "application", "yaml", YAML))


@attrs.frozen
class MediaType:
    """
    One clause of an C{Accept} header.

    @ivar type: the major type, lower-cased (C{*} for a wildcard).
    @ivar subtype: the subtype, lower-cased (C{*} for a wildcard).
    @ivar params: the parameters other than C{q}; names lower-cased, values
        as sent (C{as=Table} is case-sensitive, as in Kubernetes).
    @ivar q: the quality, 1.0 if absent, 0.0 if unparsable.
    """

    type: str
    subtype: str
    params: Mapping[str, str] = attrs.field(factory=dict)
    q: float = 1.0


@attrs.frozen
class Output:
    """
    The negotiated response format.

    @ivar encoding: C{"json"} or C{"yaml"}.
    @ivar as_kind: L{None} for the object itself, or C{"Table"},
        C{"PartialObjectMetadata"}, C{"PartialObjectMetadataList"}.
    @ivar version: the C{meta.k8s.io} version for C{as_kind}: C{"v1"} or
        C{"v1beta1"} (C{"v1"} when C{as_kind} is L{None}).
    @ivar content_type: the C{Content-Type} header to send:
        C{application/json} or C{application/yaml}.
    @ivar pretty: the clause asked for C{pretty=1}; L{encode} honours it.
    """

    encoding: str = "json"
    as_kind: str | None = None
    version: str = "v1"
    content_type: str = JSON
    pretty: bool = False


#: JSON, the answer when no C{Accept} header is sent.
DEFAULT_OUTPUT = Output()
#: How Kubernetes writes a Status when even the error cannot be negotiated
#: (C{responsewriters.WriteRawJSON}): indented JSON.
RAW_JSON_OUTPUT = Output(pretty=True)


def parse_accept(header: str | None) -> list[MediaType]:
    """
    Parse an C{Accept} header into clauses in negotiation order.

    Clauses without a C{/} (other than C{*}) or with two are skipped, as is a
    parameter without exactly one C{=}.  The order is C{goautoneg}'s: a
    stable insertion sort where a clause moves ahead of its neighbour if it
    has a higher q, or a specific type or subtype against a wildcard.  Unlike
    C{goautoneg}, types and parameter names are compared case-insensitively
    and quoted parameter values are unquoted (RFC 9110); a C{q=0} clause is
    kept, last, as Kubernetes keeps it.

    @param header: the header value, or L{None}.
    @return: the clauses, most preferred first.
    """
    if not header:
        return []
    clauses = [clause for part in header.split(",") if (clause := _parse_clause(part))]
    for index in range(1, len(clauses)):
        position = index
        while position > 0 and _sorts_before(clauses[position], clauses[position - 1]):
            clauses[position], clauses[position - 1] = (
                clauses[position - 1], clauses[position])
            position -= 1
    return clauses


def _parse_clause(part: str) -> MediaType | None:
    media_range, *raw_params = part.split(";")
    major, slash, minor = media_range.strip().lower().partition("/")
    major, minor = major.strip(), minor.strip()
    if not slash:
        if major != "*":
            return None
        minor = "*"
    if "/" in minor or not major or not minor:
        return None
    params: dict[str, str] = {}
    q = 1.0
    for raw in raw_params:
        if raw.count("=") != 1:
            continue
        name, value = (piece.strip() for piece in raw.split("="))
        name = name.lower()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        if name == "q":
            q = _parse_q(value)
        else:
            params[name] = value
    return MediaType(major, minor, params, q)


def _parse_q(value: str) -> float:
    try:
        q = float(value)
    except ValueError:
        return 0.0
    return q if math.isfinite(q) else 0.0


def _sorts_before(a: MediaType, b: MediaType) -> bool:
    """C{goautoneg}'s C{Less}, quirks included."""
    if a.q > b.q:
        return True
    if a.type != "*" and b.type == "*":
        return True
    return a.subtype != "*" and b.subtype == "*"


@attrs.frozen
class _Restrictions:
    """What an endpoint allows beyond a plain serializer (Go's EndpointRestrictions)."""

    table: bool
    partial: bool
    server_version: bool


_ERROR_RESTRICTIONS = _Restrictions(False, False, False)


def negotiate_output(
    accept: str | None,
    *,
    allow_table: bool,
    allow_partial: bool,
    stream: bool = False,
) -> Output:
    """
    Choose the response format for a request.

    @param accept: the C{Accept} header, or L{None}.  Missing or empty means
        JSON.
    @param allow_table: the endpoint can convert to a C{meta.k8s.io} Table
        (resource endpoints: get, list, watch, and write responses).
    @param allow_partial: the endpoint can convert to
        C{PartialObjectMetadata(List)} (resource endpoints).  With both
        flags off the endpoint behaves like Kubernetes'
        C{DefaultEndpointRestrictions} (discovery, errors): any C{as=}, C{g=}
        or C{v=} parameter disqualifies a clause.  With either on, C{sv=v1}
        is also allowed, as the resource scope allows it.
    @param stream: the response is a watch stream.  Negotiation is the same,
        but a chosen YAML format is then refused (Kubernetes has no YAML
        stream serializer, and does not fall through to the next clause).
    @return: the chosen format.
    @raise wardled.apierrors.StatusError: 406, listing L{SERVED_MEDIA_TYPES}
        (or L{STREAM_MEDIA_TYPES} when a watch chose YAML).
    """
    restrictions = _Restrictions(
        allow_table, allow_partial, allow_table or allow_partial)
    output = _negotiate(accept, restrictions)
    if output is None:
        raise apierrors.not_acceptable(SERVED_MEDIA_TYPES)
    if stream and output.encoding != "json":
        raise apierrors.not_acceptable(STREAM_MEDIA_TYPES)
    return output


def negotiate_error_output(accept: str | None) -> Output:
    """
    Choose the format for an error C{Status}, as C{ErrorNegotiated} does:
    no transformations are allowed, and if nothing is acceptable the Status
    is still written, as indented JSON (L{RAW_JSON_OUTPUT}).

    @param accept: the C{Accept} header, or L{None}.
    @return: the format.
    """
    return _negotiate(accept, _ERROR_RESTRICTIONS) or RAW_JSON_OUTPUT


# Clients send the same few Accept headers over and over (kubectl, client-go,
# curl): remember the answers (both arguments and the result are immutable).
@functools.lru_cache(maxsize=256)
def _negotiate(accept: str | None, restrictions: _Restrictions) -> Output | None:
    if not accept:
        return DEFAULT_OUTPUT
    for clause in parse_accept(accept):
        for encoding, major, minor, content_type in _SERIALIZERS:
            if clause.type == "*" and clause.subtype == "*" or (
                clause.type == major and clause.subtype in (minor, "*")
            ):
                output = _accept_options(clause.params, encoding, content_type, restrictions)
                if output is not None:
                    return output
    return None


def _accept_options(
    params: Mapping[str, str],
    encoding: str,
    content_type: str,
    restrictions: _Restrictions,
) -> Output | None:
    """
    Kubernetes' C{acceptMediaTypeOptions}: the clause's parameters applied
    to one serializer, or L{None} if they rule it out.
    """
    convert: dict[str, str] | None = None
    pretty = False
    for name, value in params.items():
        if name in ("as", "g", "v"):
            convert = convert or {}
            convert[name] = value
        elif name == "stream":
            if value and (encoding != "json" or value != "watch"):
                return None
        elif name == "sv":
            if value and not (restrictions.server_version and value == "v1"):
                return None
        elif name == "pretty":
            pretty = value == "1"
    if convert is None:
        return Output(encoding, None, "v1", content_type, pretty)
    kind, group, version = (convert.get(k, "") for k in ("as", "g", "v"))
    if group != META_GROUP or version not in _META_VERSIONS:
        return None
    allowed = (kind == TABLE and restrictions.table) or (
        kind in (PARTIAL_OBJECT_METADATA, PARTIAL_OBJECT_METADATA_LIST)
        and restrictions.partial
    )
    if not allowed:
        return None
    return Output(encoding, kind, version, content_type, pretty)


_GO_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_PRETTY_AGENTS = ("curl", "Wget", "Mozilla/5.0")


def wants_pretty(query_pretty: str | None, user_agent: str | None) -> bool:
    """
    Kubernetes' C{isPrettyPrint}.

    @param query_pretty: the first C{pretty} query value, or L{None}.  A
        non-empty value decides alone, parsed like Go's C{strconv.ParseBool}
        (C{1}, C{t}, C{true}... are on; anything else, unparsable included,
        is off).
    @param user_agent: the C{User-Agent} header, or L{None}.  Used only when
        C{pretty} is absent or empty: browsers and command-line tools
        (C{curl}, C{Wget}, C{Mozilla/5.0} prefixes) get pretty output.
    @return: whether to indent JSON.
    """
    if query_pretty:
        return query_pretty in _GO_TRUE
    return user_agent is not None and user_agent.startswith(_PRETTY_AGENTS)


# --------------------------------------------------------------------------
# Encoding

_GO_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026",
               "\u2028": "\\u2028", "\u2029": "\\u2029"}
_GO_ESCAPED = re.compile("[<>&\u2028\u2029]")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def encode(obj: Any, output: Output, pretty: bool) -> bytes:
    """
    Serialize a response object.

    @param obj: JSON-able data (dicts keep their key order in JSON).
    @param output: the negotiated format.
    @param pretty: the L{wants_pretty} decision; C{output.pretty} (a
        C{pretty=1} media-type parameter) also turns it on.  YAML ignores it.
    @return: the body.  Compact JSON ends with a newline, pretty JSON does
        not, exactly as Kubernetes writes them.
    @raise ValueError: for NaN or infinite floats, which Go cannot encode
        either.
    """
    if output.encoding == "yaml":
        return encode_yaml(obj)
    return encode_json(obj, pretty or output.pretty)


def encode_json(obj: Any, pretty: bool = False) -> bytes:
    """
    JSON as Go writes it: C{json.Encoder.Encode} (compact, trailing newline)
    or C{json.MarshalIndent(obj, "", "  ")}.

    @param obj: JSON-able data.
    @param pretty: indent.
    @return: UTF-8 bytes.
    """
    if pretty:
        text = json.dumps(obj, ensure_ascii=False, allow_nan=False, indent=2)
    else:
        text = json.dumps(obj, ensure_ascii=False, allow_nan=False,
                          separators=(",", ":")) + "\n"
    if _GO_ESCAPED.search(text):
        text = _GO_ESCAPED.sub(lambda match: _GO_ESCAPES[match.group()], text)
    return _utf8(text)


def json_members(members: Mapping[str, Any]) -> bytes:
    """
    The members of a compact JSON object, as L{encode_json} writes them,
    without the braces: C{"kind":"Flunder","apiVersion":"..."}.
    """
    return encode_json(dict(members))[1:-2]


def prepend_members(members: bytes, obj: bytes) -> bytes:
    """
    A compact JSON object with C{members} (from L{json_members}) first and
    then those of C{obj}: L{encode_json} of the merged object, without the
    trailing newline.

    @param obj: a compact JSON object, as L{encode_json} writes it, without
        the trailing newline, and without the keys of C{members}.
    """
    if obj == b"{}":
        return b"{" + members + b"}"
    return b"{" + members + b"," + obj[1:]


def json_with_array(members: bytes, name: str, items: Sequence[bytes]) -> bytes:
    """
    L{encode_json} of an object of C{members} (from L{json_members}) then
    C{name}, an array of already encoded C{items} (compact
    JSON values without newlines), joined rather than encoded again.
    """
    key = json_members({name: None})[: -len(b"null")]
    separator = b"," if members else b""
    return b"".join(
        (b"{", members, separator, key, b"[", b",".join(items), b"]}\n")
    )


def _utf8(text: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return _LONE_SURROGATE.sub("\ufffd", text).encode("utf-8")


# YAML, as sigs.k8s.io/yaml.JSONToYAML (go-yaml v2) writes it.

_STR_TAG = "tag:yaml.org,2002:str"
_SEQ_TAG = "tag:yaml.org,2002:seq"
_MAP_TAG = "tag:yaml.org,2002:map"
_INT64_MIN = -(2**63)
_UINT64_MAX = 2**64 - 1


class _GoYamlEmitter(_EmitterBase, BaseResolver):
    """
    libyaml's emitter (go-yaml v2 is a port of it) with every scalar tagged
    as a string, so no tags are written and the style we choose is used.
    """

    def __init__(self, stream: Any) -> None:
        _EmitterBase.__init__(self, stream, indent=2, width=80, allow_unicode=True)
        BaseResolver.__init__(self)

    def resolve(self, kind: type, value: Any, implicit: Any) -> str:
        if kind is ScalarNode:
            return _STR_TAG
        return _SEQ_TAG if kind is SequenceNode else _MAP_TAG


def encode_yaml(obj: Any) -> bytes:
    """
    YAML as C{sigs.k8s.io/yaml.JSONToYAML} writes it.

    @param obj: JSON-able data.
    @return: UTF-8 bytes.
    """
    try:
        return _emit(_yaml_node(obj))
    except UnicodeEncodeError:
        return _emit(_yaml_node(_scrub_surrogates(obj)))


def _emit(node: Node) -> bytes:
    stream = io.StringIO()
    emitter = _GoYamlEmitter(stream)
    emitter.open()
    emitter.serialize(node)
    emitter.close()
    return stream.getvalue().encode("utf-8")


def _scrub_surrogates(obj: Any) -> Any:
    if isinstance(obj, str):
        return _LONE_SURROGATE.sub("\ufffd", obj)
    if isinstance(obj, dict):
        return {_scrub_surrogates(k): _scrub_surrogates(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_scrub_surrogates(item) for item in obj]
    return obj


def _yaml_node(value: Any) -> Node:
    if isinstance(value, dict):
        return MappingNode(_MAP_TAG, [
            (_string_node(key), _yaml_node(value[key])) for key in _yaml_key_order(value)
        ])
    if isinstance(value, (list, tuple)):
        return SequenceNode(_SEQ_TAG, [_yaml_node(item) for item in value])
    if isinstance(value, str):
        return _string_node(value)
    return ScalarNode(_STR_TAG, _yaml_scalar_text(value))


def _string_node(text: str) -> ScalarNode:
    """
    go-yaml v2's C{stringv}: multi-line strings are literal blocks, strings
    it would read back as another type are double-quoted, the rest plain
    (the emitter falls back to single quotes when plain is impossible).
    """
    style: str | None = None
    if "\n" in text:
        style = "|"
    elif resolve_plain_scalar(text)[0] != STR or is_base60_float(text):
        style = '"'
    return ScalarNode(_STR_TAG, text, style=style)


def _yaml_scalar_text(value: Any) -> str:
    """
    A non-string scalar after Go's JSON → YAML round trip: JSON integers
    become YAML ints, other numbers go-yaml floats (C{'g'} format).
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        if _INT64_MIN <= value <= _UINT64_MAX:
            return str(value)
        return format_go_float(float(value), "g")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"json: unsupported value: {format_go_float(value, 'g')}")
        if value.is_integer() and abs(value) < 1e21:
            return _yaml_scalar_text(int(value))
        return format_go_float(value, "g")
    raise TypeError(f"cannot encode {type(value).__name__} as YAML")


def _yaml_key_order(mapping: dict[str, Any]) -> list[str]:
    keys = list(mapping)
    if all(key.isalpha() for key in keys):
        return sorted(keys)
    return sorted(keys, key=_GO_YAML_KEY)


def _wrap_int64(value: int) -> int:
    return (value + 2**63) % 2**64 - 2**63


def _digit_run(text: str, start: int, seed: int) -> tuple[int, int]:
    """
    The digits from C{start} added up as go-yaml does it (int64 arithmetic,
    wrapping, starting from C{seed}), and where they end.
    """
    number = seed
    end = start
    while end < len(text) and text[end].isdecimal():
        number = _wrap_int64(number * 10 + ord(text[end]) - 48)
        end += 1
    return number, end


def _zero_seed(a: str, b: str, index: int) -> int:
    """
    go-yaml's leading-zero rule: when a C{0} differs after a run of digits
    that is not all zeros, both numbers start from 1.
    """
    if "0" not in (a[index], b[index]):
        return 0
    back = index - 1
    while back >= 0 and a[back].isdecimal():
        if a[back] != "0":
            return 1
        back -= 1
    return 0


def _go_yaml_key_less(a: str, b: str) -> bool:
    """go-yaml v2's C{keyList.Less} for string keys: a natural sort."""
    for index in range(min(len(a), len(b))):
        if a[index] == b[index]:
            continue
        a_letter, b_letter = a[index].isalpha(), b[index].isalpha()
        if a_letter and b_letter:
            return a[index] < b[index]
        if a_letter or b_letter:
            return b_letter
        seed = _zero_seed(a, b, index)
        a_number, a_end = _digit_run(a, index, seed)
        b_number, b_end = _digit_run(b, index, seed)
        if a_number != b_number:
            return a_number < b_number
        if a_end != b_end:
            return a_end < b_end
        return a[index] < b[index]
    return len(a) < len(b)


def _compare_keys(a: str, b: str) -> int:
    if _go_yaml_key_less(a, b):
        return -1
    return 1 if _go_yaml_key_less(b, a) else 0


_GO_YAML_KEY: Callable[[str], Any] = cmp_to_key(_compare_keys)
