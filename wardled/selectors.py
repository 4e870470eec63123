# -*- test-case-name: tests.test_selectors -*-
"""
Label and field selectors, as the C{labelSelector} and C{fieldSelector}
query parameters of list, watch and deletecollection requests carry them.

The parsers follow k8s.io/apimachinery C{pkg/labels/selector.go} and
C{pkg/fields/selector.go} token for token, so that what Kubernetes accepts
is accepted here and what it rejects is rejected with the same message:
the HTTP layer puts L{SelectorError.message} verbatim into a 400 BadRequest.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence

import attrs

from wardled.apis.validation import (
    go_json,
    go_quote,
    is_qualified_name,
    is_valid_label_value,
)

__all__ = [
    "DEFAULT_FIELD_SELECTOR_FIELDS",
    "FieldSelector",
    "FieldTerm",
    "LabelSelector",
    "Operator",
    "Requirement",
    "SelectorError",
    "escape_field_value",
    "make_requirement",
    "parse_field_selector",
    "parse_label_selector",
    "unescape_field_value",
]


class SelectorError(ValueError):
    """
    A selector could not be parsed; C{message} is Kubernetes' error text.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# ---------------------------------------------------------------------------
# Label selectors: requirements


class Operator(enum.Enum):
    """
    A requirement's relation between a label and its values; the values are
    Go's C{selection.Operator} strings.
    """

    EQUALS = "="
    DOUBLE_EQUALS = "=="
    NOT_EQUALS = "!="
    IN = "in"
    NOT_IN = "notin"
    EXISTS = "exists"
    DOES_NOT_EXIST = "!"
    GREATER_THAN = "gt"
    LESS_THAN = "lt"


_BINARY_OPERATORS = (
    Operator.IN,
    Operator.NOT_IN,
    Operator.EQUALS,
    Operator.DOUBLE_EQUALS,
    Operator.NOT_EQUALS,
    Operator.GREATER_THAN,
    Operator.LESS_THAN,
)
_EXACT_OPERATORS = (Operator.EQUALS, Operator.DOUBLE_EQUALS, Operator.NOT_EQUALS)
_ORDER_OPERATORS = (Operator.GREATER_THAN, Operator.LESS_THAN)
_SET_OPERATORS = (Operator.IN, Operator.NOT_IN)
_OPERATOR_TEXT = {
    Operator.EQUALS: "=",
    Operator.DOUBLE_EQUALS: "==",
    Operator.NOT_EQUALS: "!=",
    Operator.IN: " in ",
    Operator.NOT_IN: " notin ",
    Operator.GREATER_THAN: ">",
    Operator.LESS_THAN: "<",
}

_INT64_MIN = -(1 << 63)
_INT64_MAX = (1 << 63) - 1


def _parse_int64(text: str) -> int | None:
    """
    Go's C{strconv.ParseInt(text, 10, 64)}: an optional sign and ASCII
    digits only, within int64; C{None} if not.
    """
    digits = text[1:] if text[:1] in ("+", "-") else text
    if not digits or not all("0" <= char <= "9" for char in digits):
        return None
    value = int(text)
    if not _INT64_MIN <= value <= _INT64_MAX:
        return None
    return value


@attrs.frozen
class Requirement:
    """
    One condition on one label; build checked ones with L{make_requirement}.

    @ivar key: the label key.
    @ivar operator: how the label relates to C{values}.
    @ivar values: the values, in the order given (the parser sorts them).
    """

    key: str
    operator: Operator
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        """
        Whether C{labels} satisfy this requirement.
        """
        if self.operator is Operator.EXISTS:
            return self.key in labels
        if self.operator is Operator.DOES_NOT_EXIST:
            return self.key not in labels
        if self.key not in labels:
            return self.operator in (Operator.NOT_IN, Operator.NOT_EQUALS)
        value = labels[self.key]
        if self.operator in (Operator.IN, Operator.EQUALS, Operator.DOUBLE_EQUALS):
            return value in self.values
        if self.operator in (Operator.NOT_IN, Operator.NOT_EQUALS):
            return value not in self.values
        return self._compares(value)

    def _compares(self, value: str) -> bool:
        """
        The C{gt} / C{lt} test: both sides must be int64 integers.
        """
        label_number = _parse_int64(value)
        if label_number is None or len(self.values) != 1:
            return False
        bound = _parse_int64(self.values[0])
        if bound is None:
            return False
        if self.operator is Operator.GREATER_THAN:
            return label_number > bound
        return label_number < bound

    def __str__(self) -> str:
        if self.operator is Operator.EXISTS:
            return self.key
        if self.operator is Operator.DOES_NOT_EXIST:
            return "!" + self.key
        values = (
            self.values[0] if len(self.values) == 1 else ",".join(sorted(self.values))
        )
        if self.operator in _SET_OPERATORS:
            values = f"({values})"
        return self.key + _OPERATOR_TEXT[self.operator] + values


def _invalid_text(path: str, value: str, detail: str) -> str:
    """
    A C{field.Invalid} error with a string value, as Go prints it.
    """
    return f"{path}: Invalid value: {go_quote(value)}: {detail}"


def _values_text(values: Sequence[str]) -> str:
    """
    How Go prints a C{[]string} bad value: as JSON.
    """
    return go_json(list(values))


def _aggregate(messages: list[str]) -> str:
    """
    C{utilerrors.Aggregate.Error()}: one message alone, several in brackets,
    duplicates dropped.
    """
    unique = list(dict.fromkeys(messages))
    if len(unique) == 1:
        return unique[0]
    return "[" + ", ".join(unique) + "]"


def _key_error(key: str, path: str) -> str | None:
    errors = is_qualified_name(key)
    if errors:
        return _invalid_text(path, key, "; ".join(errors))
    return None


def _operator_errors(operator: Operator, values: Sequence[str]) -> list[str]:
    """
    NewRequirement's checks of the number (and, for gt / lt, the form) of
    values an operator takes.
    """
    errors = []
    if operator in _SET_OPERATORS and not values:
        detail = "for 'in', 'notin' operators, values set can't be empty"
        errors.append(f"values: Invalid value: {_values_text(values)}: {detail}")
    elif operator in _EXACT_OPERATORS and len(values) != 1:
        detail = "exact-match compatibility requires one single value"
        errors.append(f"values: Invalid value: {_values_text(values)}: {detail}")
    elif operator in (Operator.EXISTS, Operator.DOES_NOT_EXIST) and values:
        detail = "values set must be empty for exists and does not exist"
        errors.append(f"values: Invalid value: {_values_text(values)}: {detail}")
    elif operator in _ORDER_OPERATORS:
        if len(values) != 1:
            detail = "for 'Gt', 'Lt' operators, exactly one value is required"
            errors.append(f"values: Invalid value: {_values_text(values)}: {detail}")
        for index, value in enumerate(values):
            if _parse_int64(value) is None:
                detail = "for 'Gt', 'Lt' operators, the value must be an integer"
                errors.append(_invalid_text(f"values[{index}]", value, detail))
    return errors


def make_requirement(
    key: str, operator: Operator, values: Iterable[str] = ()
) -> Requirement:
    """
    Build a L{Requirement}, checking it as Go's C{labels.NewRequirement}.

    @param key: the label key; must be a qualified name.
    @param operator: the relation.
    @param values: the values; each must be a label value, and their number
        must fit the operator.
    @raise SelectorError: with Go's aggregated message if anything is wrong.
    """
    value_list = list(values)
    errors = []
    key_error = _key_error(key, "key")
    if key_error is not None:
        errors.append(key_error)
    errors.extend(_operator_errors(operator, value_list))
    for index, value in enumerate(value_list):
        value_errors = is_valid_label_value(value)
        if value_errors:
            errors.append(
                _invalid_text(f"values[{index}][{key}]", value, "; ".join(value_errors))
            )
    if errors:
        raise SelectorError(_aggregate(errors))
    return Requirement(key, operator, tuple(value_list))


@attrs.frozen
class LabelSelector:
    """
    A conjunction of label requirements, sorted by key; with none it
    matches everything.

    @ivar requirements: the requirements, all of which must match.
    """

    requirements: tuple[Requirement, ...] = ()

    @classmethod
    def from_set(cls, labels: Mapping[str, str]) -> LabelSelector:
        """
        The selector matching exactly C{labels} (unchecked, as Go's
        C{SelectorFromSet}).
        """
        return cls(
            tuple(
                Requirement(key, Operator.EQUALS, (labels[key],))
                for key in sorted(labels)
            )
        )

    def matches(self, labels: Mapping[str, str]) -> bool:
        """
        Whether C{labels} satisfy every requirement.
        """
        return all(requirement.matches(labels) for requirement in self.requirements)

    def is_empty(self) -> bool:
        """
        Whether this selector restricts nothing.
        """
        return not self.requirements

    def requires_exact_match(self, key: str) -> str | None:
        """
        The single value C{key} must have (C{=}, C{==}, or C{in} with one
        value, on the first requirement for C{key}), else C{None}.
        """
        for requirement in self.requirements:
            if requirement.key != key:
                continue
            exact = requirement.operator in (
                Operator.EQUALS,
                Operator.DOUBLE_EQUALS,
                Operator.IN,
            )
            if exact and len(requirement.values) == 1:
                return requirement.values[0]
            return None
        return None

    def __str__(self) -> str:
        return ",".join(str(requirement) for requirement in self.requirements)


# ---------------------------------------------------------------------------
# Label selectors: lexer


class _Token(enum.Enum):
    ERROR = 0
    END_OF_STRING = 1
    CLOSED_PAR = 2
    COMMA = 3
    DOES_NOT_EXIST = 4
    DOUBLE_EQUALS = 5
    EQUALS = 6
    GREATER_THAN = 7
    IDENTIFIER = 8
    IN = 9
    LESS_THAN = 10
    NOT_EQUALS = 11
    NOT_IN = 12
    OPEN_PAR = 13


_STRING_TO_TOKEN = {
    ")": _Token.CLOSED_PAR,
    ",": _Token.COMMA,
    "!": _Token.DOES_NOT_EXIST,
    "==": _Token.DOUBLE_EQUALS,
    "=": _Token.EQUALS,
    ">": _Token.GREATER_THAN,
    "in": _Token.IN,
    "<": _Token.LESS_THAN,
    "!=": _Token.NOT_EQUALS,
    "notin": _Token.NOT_IN,
    "(": _Token.OPEN_PAR,
}

_WHITESPACE = frozenset(" \t\r\n")
_SPECIAL = frozenset("=!(),><")
# Go's lexer reads bytes and uses 0 for "no more input"; a NUL in the text
# therefore also ends whatever is being scanned.
_NUL = "\0"

_Item = tuple[_Token, str]


class _Lexer:
    """
    The label selector lexer: identifiers and keywords, operators.
    """

    def __init__(self, text: str) -> None:
        self._text = text
        self._position = 0

    def _read(self) -> str:
        if self._position < len(self._text):
            char = self._text[self._position]
            self._position += 1
            return char
        return _NUL

    def _unread(self) -> None:
        self._position -= 1

    def _scan_identifier_or_keyword(self) -> _Item:
        chars = []
        while True:
            char = self._read()
            if char == _NUL:
                break
            if char in _SPECIAL or char in _WHITESPACE:
                self._unread()
                break
            chars.append(char)
        literal = "".join(chars)
        return _STRING_TO_TOKEN.get(literal, _Token.IDENTIFIER), literal

    def _scan_special_symbol(self) -> _Item:
        last: _Item | None = None
        buffer = ""
        while True:
            char = self._read()
            if char == _NUL:
                break
            if char not in _SPECIAL:
                self._unread()
                break
            buffer += char
            if buffer in _STRING_TO_TOKEN:
                last = (_STRING_TO_TOKEN[buffer], buffer)
            elif last is not None:
                self._unread()
                break
        if last is None:
            return _Token.ERROR, f"error expected: keyword found '{buffer}'"
        return last

    def lex(self) -> _Item:
        """
        The next token and its literal text.
        """
        char = self._read()
        while char in _WHITESPACE:
            char = self._read()
        if char == _NUL:
            return _Token.END_OF_STRING, ""
        self._unread()
        if char in _SPECIAL:
            return self._scan_special_symbol()
        return self._scan_identifier_or_keyword()

    def scan(self) -> list[_Item]:
        """
        All tokens, up to and including the end of the string.
        """
        items = []
        while True:
            item = self.lex()
            items.append(item)
            if item[0] is _Token.END_OF_STRING:
                return items


# ---------------------------------------------------------------------------
# Label selectors: parser


class _ParseError(Exception):
    """
    An error inside one requirement, before Go's wrapping.
    """


_TOKEN_OPERATORS = {
    _Token.IN: Operator.IN,
    _Token.EQUALS: Operator.EQUALS,
    _Token.DOUBLE_EQUALS: Operator.DOUBLE_EQUALS,
    _Token.GREATER_THAN: Operator.GREATER_THAN,
    _Token.LESS_THAN: Operator.LESS_THAN,
    _Token.NOT_IN: Operator.NOT_IN,
    _Token.NOT_EQUALS: Operator.NOT_EQUALS,
}


class _Parser:
    """
    The recursive-descent label selector parser. In the "values" context
    the keywords C{in} and C{notin} are plain identifiers.
    """

    def __init__(self, text: str) -> None:
        self._items = _Lexer(text).scan()
        self._position = 0

    def _lookahead(self, values_context: bool = True) -> _Item:
        return self._contextual(self._items[self._position], values_context)

    def _consume(self, values_context: bool = True) -> _Item:
        self._position += 1
        return self._contextual(self._items[self._position - 1], values_context)

    @staticmethod
    def _contextual(item: _Item, values_context: bool) -> _Item:
        if values_context and item[0] in (_Token.IN, _Token.NOT_IN):
            return _Token.IDENTIFIER, item[1]
        return item

    def parse(self) -> list[Requirement]:
        requirements: list[Requirement] = []
        while True:
            token, literal = self._lookahead()
            if token is _Token.END_OF_STRING:
                return requirements
            if token not in (_Token.IDENTIFIER, _Token.DOES_NOT_EXIST):
                raise SelectorError(
                    f"found '{literal}', expected: !, identifier, or 'end of string'"
                )
            requirements.append(self._requirement())
            token, literal = self._consume()
            if token is _Token.END_OF_STRING:
                return requirements
            if token is not _Token.COMMA:
                raise SelectorError(
                    f"found '{literal}', expected: ',' or 'end of string'"
                )
            next_token, next_literal = self._lookahead()
            if next_token not in (_Token.IDENTIFIER, _Token.DOES_NOT_EXIST):
                raise SelectorError(
                    f"found '{next_literal}', expected: identifier after ','"
                )

    def _requirement(self) -> Requirement:
        try:
            return self._parse_requirement()
        except (_ParseError, SelectorError) as error:
            raise SelectorError(f"unable to parse requirement: {error}") from None

    def _parse_requirement(self) -> Requirement:
        key, operator = self._key_and_inferred_operator()
        if operator is not None:
            return make_requirement(key, operator, ())
        operator = self._operator()
        if operator in _SET_OPERATORS:
            values = self._set_values()
        else:
            values = self._exact_value()
        return make_requirement(key, operator, sorted(values))

    def _key_and_inferred_operator(self) -> tuple[str, Operator | None]:
        operator = None
        token, literal = self._consume()
        if token is _Token.DOES_NOT_EXIST:
            operator = Operator.DOES_NOT_EXIST
            token, literal = self._consume()
        if token is not _Token.IDENTIFIER:
            raise _ParseError(f"found '{literal}', expected: identifier")
        key_error = _key_error(literal, "<nil>")
        if key_error is not None:
            raise _ParseError(key_error)
        next_token, _ = self._lookahead()
        if next_token in (_Token.END_OF_STRING, _Token.COMMA) and operator is None:
            operator = Operator.EXISTS
        return literal, operator

    def _operator(self) -> Operator:
        token, literal = self._consume(values_context=False)
        if token not in _TOKEN_OPERATORS:
            expected = ", ".join(operator.value for operator in _BINARY_OPERATORS)
            raise _ParseError(f"found '{literal}', expected: {expected}")
        return _TOKEN_OPERATORS[token]

    def _set_values(self) -> set[str]:
        token, literal = self._consume()
        if token is not _Token.OPEN_PAR:
            raise _ParseError(f"found '{literal}' expected: '('")
        token, literal = self._lookahead()
        if token in (_Token.IDENTIFIER, _Token.COMMA):
            values = self._identifier_list()
            self._consume()  # the ")" the list stopped at
            return values
        if token is _Token.CLOSED_PAR:
            self._consume()
            return {""}
        raise _ParseError(f"found '{literal}', expected: ',', ')' or identifier")

    def _identifier_list(self) -> set[str]:
        values: set[str] = set()
        while True:
            token, literal = self._consume()
            if token is _Token.IDENTIFIER:
                values.add(literal)
                next_token, next_literal = self._lookahead()
                if next_token is _Token.CLOSED_PAR:
                    return values
                if next_token is not _Token.COMMA:
                    raise _ParseError(f"found '{next_literal}', expected: ',' or ')'")
            elif token is _Token.COMMA:
                # Empty values around commas: "(,a", "a,,b", "a,)".
                if not values:
                    values.add("")
                next_token, _ = self._lookahead()
                if next_token is _Token.CLOSED_PAR:
                    values.add("")
                    return values
                if next_token is _Token.COMMA:
                    values.add("")
            else:
                raise _ParseError(f"found '{literal}', expected: ',', or identifier")

    def _exact_value(self) -> set[str]:
        token, _ = self._lookahead()
        if token in (_Token.END_OF_STRING, _Token.COMMA):
            return {""}
        token, literal = self._consume()
        if token is _Token.IDENTIFIER:
            return {literal}
        raise _ParseError(f"found '{literal}', expected: identifier")


def parse_label_selector(text: str) -> LabelSelector:
    """
    Parse a label selector in Kubernetes' full syntax: C{k=v}, C{k==v},
    C{k!=v}, C{k in (a,b)}, C{k notin (a,b)}, C{k}, C{!k}, C{k>1}, C{k<1},
    joined by commas.

    @param text: the selector; empty selects everything.
    @raise SelectorError: with Kubernetes' parser message.
    """
    requirements = _Parser(text).parse()
    requirements.sort(key=lambda requirement: requirement.key)
    return LabelSelector(tuple(requirements))


# ---------------------------------------------------------------------------
# Field selectors

DEFAULT_FIELD_SELECTOR_FIELDS = ("metadata.name", "metadata.namespace")

_FIELD_OPERATORS = ("!=", "==", "=")


def escape_field_value(value: str) -> str:
    """
    Escape C{\\}, C{,} and C{=} with a backslash (Go's C{fields.EscapeValue}).
    """
    return value.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=")


def unescape_field_value(text: str) -> str:
    """
    Undo L{escape_field_value} (Go's C{fields.UnescapeValue}).

    @raise SelectorError: for an unknown escape, a trailing backslash, or an
        unescaped C{,} or C{=}.
    """
    chars = []
    escaping = False
    for char in text:
        if escaping:
            if char not in "\\,=":
                raise SelectorError(
                    f"invalid field selector: invalid escape sequence: \\{char}"
                )
            chars.append(char)
            escaping = False
        elif char == "\\":
            escaping = True
        elif char in ",=":
            raise SelectorError(
                f"invalid field selector: unescaped character in value: {ord(char)}"
            )
        else:
            chars.append(char)
    if escaping:
        raise SelectorError("invalid field selector: invalid escape sequence: \\")
    return "".join(chars)


@attrs.frozen
class FieldTerm:
    """
    One field selector term: C{field} equals (or, negated, differs from)
    C{value}. A missing field counts as the empty string.
    """

    field: str
    value: str
    negated: bool = False

    def matches(self, fields: Mapping[str, str]) -> bool:
        """
        Whether C{fields} satisfy this term.
        """
        return (fields.get(self.field, "") == self.value) != self.negated

    def __str__(self) -> str:
        operator = "!=" if self.negated else "="
        return f"{self.field}{operator}{escape_field_value(self.value)}"


@attrs.frozen
class FieldSelector:
    """
    A conjunction of field terms, in canonical (sorted) order; with none it
    matches everything.

    @ivar terms: the terms, all of which must match.
    """

    terms: tuple[FieldTerm, ...] = ()

    def matches(self, fields: Mapping[str, str]) -> bool:
        """
        Whether C{fields} satisfy every term.
        """
        return all(term.matches(fields) for term in self.terms)

    def is_empty(self) -> bool:
        """
        Whether this selector restricts nothing.
        """
        return not self.terms

    def required_value(self, field: str) -> str | None:
        """
        The value C{field} must equal (the first C{=}/C{==} term on it),
        else C{None}; for single-object fast paths.
        """
        for term in self.terms:
            if term.field == field and not term.negated:
                return term.value
        return None

    def __str__(self) -> str:
        return ",".join(str(term) for term in self.terms)


def _split_terms(text: str) -> list[str]:
    """
    Split at commas not escaped by a backslash (escapes are kept).
    """
    if not text:
        return []
    terms = []
    start = 0
    escaping = False
    for index, char in enumerate(text):
        if escaping:
            escaping = False
        elif char == "\\":
            escaping = True
        elif char == ",":
            terms.append(text[start:index])
            start = index + 1
    terms.append(text[start:])
    return terms


def _split_term(term: str) -> tuple[str, str, str] | None:
    """
    (field, operator, raw value) at the first operator, else C{None}.
    """
    for index in range(len(term)):
        for operator in _FIELD_OPERATORS:
            if term.startswith(operator, index):
                return term[:index], operator, term[index + len(operator) :]
    return None


def _parse_field_term(selector: str, part: str) -> FieldTerm:
    split = _split_term(part)
    if split is None:
        raise SelectorError(
            f"invalid selector: '{selector}'; can't understand '{part}'"
        )
    field, operator, raw_value = split
    return FieldTerm(field, unescape_field_value(raw_value), operator == "!=")


def _unknown_field_message(field: str, allowed: Sequence[str]) -> str:
    known = ", ".join(go_quote(name) for name in allowed)
    return f"{go_quote(field)} is not a known field selector: only {known}"


def parse_field_selector(
    text: str, allowed: Sequence[str] = DEFAULT_FIELD_SELECTOR_FIELDS
) -> FieldSelector:
    """
    Parse a field selector: C{field=value}, C{field==value} or
    C{field!=value} terms joined by commas, values escaped with C{\\}.

    Terms with an empty field and an empty value are dropped, as Go drops
    them; every other field must be in C{allowed}.

    @param text: the selector; empty selects everything.
    @param allowed: the fields the resource supports.
    @raise SelectorError: with Kubernetes' message.
    """
    terms = []
    for part in sorted(_split_terms(text)):
        if part:
            terms.append(_parse_field_term(text, part))
    terms = [term for term in terms if term.field or term.value]
    for term in terms:
        if term.field not in allowed:
            raise SelectorError(_unknown_field_message(term.field, allowed))
    return FieldSelector(tuple(sorted(terms, key=str)))
