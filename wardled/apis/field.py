# -*- test-case-name: tests.test_apierrors -*-
"""
Field errors, as k8s.io/apimachinery/pkg/util/validation/field has them.

Validation returns lists of L{FieldError}; L{wardled.apierrors.invalid} turns
such a list into a 422 C{Status} whose message and C{causes} match the Go
reference byte for byte, so the texts are built here exactly as Go builds
them.
"""

from __future__ import annotations

import enum
import json
from typing import Any

import attrs


class ErrorType(enum.Enum):
    """
    The kinds of field error; the value is the C{reason} of a C{StatusCause}.
    """

    NOT_FOUND = "FieldValueNotFound"
    REQUIRED = "FieldValueRequired"
    DUPLICATE = "FieldValueDuplicate"
    INVALID = "FieldValueInvalid"
    NOT_SUPPORTED = "FieldValueNotSupported"
    FORBIDDEN = "FieldValueForbidden"
    TOO_LONG = "FieldValueTooLong"
    TOO_MANY = "FieldValueTooMany"
    INTERNAL = "InternalError"
    TYPE_INVALID = "FieldValueTypeInvalid"


_TYPE_TEXT = {
    ErrorType.NOT_FOUND: "Not found",
    ErrorType.REQUIRED: "Required value",
    ErrorType.DUPLICATE: "Duplicate value",
    ErrorType.INVALID: "Invalid value",
    ErrorType.NOT_SUPPORTED: "Unsupported value",
    ErrorType.FORBIDDEN: "Forbidden",
    ErrorType.TOO_LONG: "Too long",
    ErrorType.TOO_MANY: "Too many",
    ErrorType.INTERNAL: "Internal error",
    ErrorType.TYPE_INVALID: "Invalid value",
}

# Types whose body never shows the bad value (Go's ErrorBody).
_VALUELESS = frozenset(
    {ErrorType.REQUIRED, ErrorType.FORBIDDEN, ErrorType.TOO_LONG, ErrorType.INTERNAL}
)


class _Omit:
    """Marker: the error carries no value to print."""


OMIT: Any = _Omit()


def go_quote(text: str) -> str:
    """
    Quote C{text} the way Go's C{%q} does for ordinary strings.
    """
    return json.dumps(text, ensure_ascii=False)


def format_value(value: Any) -> str:
    """
    Print a bad value the way field.Error.ErrorBody does.
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        return go_quote(value)
    if isinstance(value, GoRepr):
        return value.text
    return json.dumps(value, sort_keys=True)


@attrs.frozen
class GoRepr:
    """
    A value whose Go rendering is given literally, e.g. C{0x0} for the
    C{uint64} resourceVersion in "must be specified for an update".
    """

    text: str


@attrs.frozen
class FieldError:
    """
    One validation failure at one field path.
    """

    type: ErrorType
    field: str
    value: Any = OMIT
    detail: str = ""

    def body(self) -> str:
        """
        The error without its field path: the C{message} of a cause.
        """
        text = _TYPE_TEXT[self.type]
        if self.type not in _VALUELESS and self.value is not OMIT:
            text = f"{text}: {format_value(self.value)}"
        if self.detail:
            text = f"{text}: {self.detail}"
        return text

    def __str__(self) -> str:
        return f"{self.field}: {self.body()}"


def invalid(field: str, value: Any, detail: str) -> FieldError:
    return FieldError(ErrorType.INVALID, field, value, detail)


def required(field: str, detail: str = "") -> FieldError:
    return FieldError(ErrorType.REQUIRED, field, OMIT, detail)


def forbidden(field: str, detail: str) -> FieldError:
    return FieldError(ErrorType.FORBIDDEN, field, OMIT, detail)


def too_long(field: str, max_length: int) -> FieldError:
    unit = "byte" if max_length == 1 else "bytes"
    return FieldError(
        ErrorType.TOO_LONG, field, OMIT, f"may not be more than {max_length} {unit}"
    )


def not_supported(field: str, value: Any, supported: list[str]) -> FieldError:
    detail = ""
    if supported:
        detail = "supported values: " + ", ".join(go_quote(s) for s in supported)
    return FieldError(ErrorType.NOT_SUPPORTED, field, value, detail)


def aggregate(errors: list[FieldError]) -> str:
    """
    Join errors the way utilerrors.NewAggregate prints them: one error alone,
    several as C{[a, b]}, duplicates dropped.
    """
    messages: list[str] = []
    for error in errors:
        text = str(error)
        if text not in messages:
            messages.append(text)
    if len(messages) == 1:
        return messages[0]
    return "[" + ", ".join(messages) + "]"
