# -*- test-case-name: tests.test_body, tests.test_negotiate -*-
"""
YAML as go-yaml v2 reads it, for YAML request bodies and the YAML encoder.

The Go reference turns a YAML body into JSON with C{sigs.k8s.io/yaml}, on
top of go-yaml v2: YAML 1.1 scalar rules (C{yes}/C{on}/C{y} are booleans,
C{0777} is octal, timestamps stay strings), non-string keys become
strings, C{<<} merges, limits on aliases and nesting.  PyYAML differs on
all of these, and on the wording of errors.  Clients see the reference's
exact text for a malformed body (C{yaml: line 3: mapping values are not
allowed in this context}), so this module emulates go-yaml v2: scalar
resolution, a document builder over libyaml's events, and Go's float
formatting (C{strconv.FormatFloat}), which its error texts and the YAML
encoder (L{wardled.api.negotiate}) both need.
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
from collections.abc import Callable
from typing import Any

import attrs
import yaml
import yaml.events as yev

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1
_UINT64_MAX = 2**64 - 1
#: go-yaml v2's limit on nesting.
_MAX_DEPTH = 10000


class GoYamlError(Exception):
    """
    A body go-yaml v2 (or the JSON conversion after it) would refuse; the
    message is Go's error text.
    """


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
    raise GoYamlError(
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
        raise GoYamlError(f"json: unsupported value: {format_go_float(value, 'g')}")
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
        @raise GoYamlError: with go-yaml's wording.
        """
        try:
            self._run()
        except yaml.MarkedYAMLError as error:
            raise GoYamlError(_go_yaml_parse_message(error)) from None
        except yaml.YAMLError as error:
            reason = getattr(error, "reason", None) or str(error)
            raise GoYamlError(f"yaml: {reason}") from None
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
            raise GoYamlError("yaml: document contains excessive aliasing")

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
            raise GoYamlError(f"yaml: exceeded max depth of {_MAX_DEPTH}")
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
            raise GoYamlError(f"yaml: unknown anchor '{event.anchor}' referenced")
        if anchor.open:
            raise GoYamlError(f"yaml: anchor '{event.anchor}' value contains itself")
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
                raise GoYamlError(f"yaml: invalid map key: {_go_repr(value)}")
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
    raise GoYamlError(f"yaml: cannot decode !!{kind} `{text}` as a !!{wanted}")


def _merge_into(target: dict[str, Any], source: Any) -> None:
    """go-yaml v2's C{<<} merge: a map, or a list of maps (earlier ones win)."""
    if isinstance(source, dict):
        target.update(source)
        return
    if isinstance(source, list) and all(isinstance(item, dict) for item in source):
        for item in reversed(source):
            target.update(item)
        return
    raise GoYamlError("yaml: map merge requires map or sequence of maps as the value")


def _decode_binary(text: str) -> str:
    try:
        raw = base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise GoYamlError("yaml: !!binary value contains invalid base64 data") from None
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



@attrs.frozen
class YamlDocument:
    """
    A YAML body converted to JSON-able data.

    @ivar obj: the first document (L{None} if empty).
    @ivar duplicate_paths: field paths of keys set more than once, e.g.
        C{metadata.name}; the last value won.
    @ivar duplicate_lines: go-yaml's strict-mode text for each repeated key,
        C{line N: key "name" already set in map}.
    """

    obj: Any
    duplicate_paths: list[str]
    duplicate_lines: list[str]


def yaml_to_json(content: bytes) -> YamlDocument:
    """
    YAML body → JSON-able data, as C{sigs.k8s.io/yaml.YAMLToJSON} does it
    (first document only, as go-yaml reads it), plus the duplicates its
    strict twin C{YAMLToJSONStrict} reports.

    @param content: the raw body.
    @raise GoYamlError: with go-yaml's (or Go's C{json.Marshal}) wording.
    """
    reader = _YamlReader(content)
    obj = reader.read()
    return YamlDocument(obj, reader.duplicate_paths, reader.duplicate_lines)


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
