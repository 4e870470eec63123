# -*- test-case-name: tests.test_body -*-
"""
JSON request bodies as Go's C{encoding/json} reads them, errors included.

Python's parser accepts what Go's rejects (C{NaN}, C{Infinity}), reads
integers and lone surrogate escapes differently, and words its errors its
own way.  Clients see the reference's error text for a malformed body
(C{invalid character 'x' looking for beginning of value}), so this module
parses with Go's acceptance rules and, when parsing fails, re-scans the
body with a port of Go's validity scanner to word the error exactly as
the reference does.  It also notes repeated keys, which the Kubernetes
strict decoder reports.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from typing import Any

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1


class GoJsonError(Exception):
    """
    A body Go's C{encoding/json} would refuse; the message is Go's error
    text.
    """


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


def loads(content: bytes) -> tuple[Any, list[str]]:
    """
    Parse a JSON body with Go's acceptance rules and error texts, noting
    repeated keys.

    @param content: the raw body.
    @return: the value (unpaired C{\\uD800} escapes and invalid UTF-8
        replaced by U+FFFD, integers kept as int64 or float64, as Kubernetes'
        int-preserving decoder keeps them) and the field paths of repeated
        keys, e.g. C{metadata.name} or C{spec.items[0].name}; the last value
        won.
    @raise GoJsonError: Go's text for the syntax error.
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
        raise GoJsonError(_CONSTANT_ERRORS[str(error)]) from None
    except (ValueError, RecursionError) as error:
        raise GoJsonError(_json_syntax_message(content, text, error)) from None
    if not clean or _SURROGATE_ESCAPE.search(content):
        obj = _replace_lone_surrogates(obj)
        duplicates = [(d, [_scrub(k) for k in keys]) for d, keys in duplicates]
    return obj, _duplicate_paths(obj, duplicates)


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
        raise GoJsonError(f"invalid character {_quote_char(byte)} {context}")

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
            raise GoJsonError("unexpected end of JSON input")

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
    except GoJsonError as error:
        return str(error)
    return None
