# -*- test-case-name: tests.test_types -*-
"""
A small declarative schema language for API types.

Each API type is declared once (L{wardled.apis.wardle}, L{wardled.apis.meta})
with these building blocks, and that one declaration drives:

  - decoding: type checks with Go's C{json: cannot unmarshal ...} wording,
    unknown fields pruned and reported (for C{fieldValidation}), zero values
    dropped where Go's C{omitempty} would drop them, keys put in the order
    Go's encoder writes them;
  - the OpenAPI documents (a later issue) and field documentation.

Objects are plain JSON values (dicts, lists, strings, numbers) throughout the
server: decoding normalises them, so everything downstream can trust shape.
"""

from __future__ import annotations

from typing import Any

import attrs


class DecodeError(Exception):
    """
    A value has the wrong JSON type for its field.

    The message follows Go's C{encoding/json}:
    C{json: cannot unmarshal number into Go struct field FlunderSpec.spec.reference of type string}.
    """


@attrs.define
class DecodeContext:
    """
    What one decode collects besides the value: unknown field paths.
    """

    unknown_fields: list[str] = attrs.Factory(list)


def go_json_type(value: Any) -> str:
    """
    Name a JSON value's type as Go's decoder does in its errors.
    """
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "null"


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


@attrs.frozen
class Schema:
    """
    Base of every schema node.

    @ivar go_type: the Go type name printed in decode errors.
    """

    go_type: str = attrs.field(default="", kw_only=True)

    def decode(self, value: Any, path: str, owner: str, ctx: DecodeContext) -> Any:
        raise NotImplementedError()

    def is_zero(self, value: Any) -> bool:
        """
        Whether Go's C{omitempty} would leave C{value} out.
        """
        return value in ("", 0, False, None) or value == {} or value == []

    def _mismatch(self, value: Any, path: str, owner: str) -> DecodeError:
        return DecodeError(
            f"json: cannot unmarshal {go_json_type(value)} into Go struct field "
            f"{owner}.{path} of type {self.go_type}"
        )


@attrs.frozen
class String(Schema):
    """
    A string, optionally limited to C{enum} values (documentation only: Go
    enums are plain strings; validation checks the values).
    """

    go_type: str = attrs.field(default="string", kw_only=True)
    enum: tuple[str, ...] = ()
    format: str = ""

    def decode(self, value: Any, path: str, owner: str, ctx: DecodeContext) -> Any:
        if not isinstance(value, str):
            raise self._mismatch(value, path, owner)
        return value


@attrs.frozen
class Integer(Schema):
    go_type: str = attrs.field(default="int64", kw_only=True)

    def decode(self, value: Any, path: str, owner: str, ctx: DecodeContext) -> Any:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self._mismatch(value, path, owner)
        if isinstance(value, float):
            if not value.is_integer():
                raise DecodeError(
                    f"json: cannot unmarshal number {value} into Go struct field "
                    f"{owner}.{path} of type {self.go_type}"
                )
            value = int(value)
        return value


@attrs.frozen
class Boolean(Schema):
    go_type: str = attrs.field(default="bool", kw_only=True)

    def decode(self, value: Any, path: str, owner: str, ctx: DecodeContext) -> Any:
        if not isinstance(value, bool):
            raise self._mismatch(value, path, owner)
        return value


@attrs.frozen
class Free(Schema):
    """
    Any JSON value, kept as given (e.g. C{fieldsV1}).
    """

    go_type: str = attrs.field(default="object", kw_only=True)
    must_be_object: bool = False

    def decode(self, value: Any, path: str, owner: str, ctx: DecodeContext) -> Any:
        if self.must_be_object and not isinstance(value, dict):
            raise self._mismatch(value, path, owner)
        return value


@attrs.frozen
class Map(Schema):
    """
    A JSON object with arbitrary keys; Go encodes map keys sorted.
    """

    values: Schema = attrs.field(factory=String)
    go_type: str = attrs.field(default="map[string]string", kw_only=True)

    def decode(self, value: Any, path: str, owner: str, ctx: DecodeContext) -> Any:
        if not isinstance(value, dict):
            raise self._mismatch(value, path, owner)
        result = {}
        for key in sorted(value):
            item = value[key]
            if item is None:
                item = ""
            result[key] = self.values.decode(item, path, owner, ctx)
        return result


@attrs.frozen
class List(Schema):
    """
    A JSON array; C{list_type} is the C{x-kubernetes-list-type}.
    """

    items: Schema = attrs.field(factory=String)
    list_type: str = ""
    go_type: str = attrs.field(default="[]string", kw_only=True)

    def decode(self, value: Any, path: str, owner: str, ctx: DecodeContext) -> Any:
        if not isinstance(value, list):
            raise self._mismatch(value, path, owner)
        return [self.items.decode(item, path, owner, ctx) for item in value]


@attrs.frozen
class Field:
    """
    One named member of a L{Struct}.

    Go never leaves out a (non-pointer) struct field, so those are always
    emitted, empty or not (Flunder's C{"spec":{}} and C{"status":{}}).

    @ivar keep_empty: emit the field even when empty (Go fields without
        C{omitempty}, such as a list's C{items}).
    @ivar pointer: a Go pointer field: only an absent value is left out, so
        C{false} or C{""} survive a round trip.
    """

    name: str
    schema: Schema
    doc: str = ""
    required: bool = False
    keep_empty: bool = False
    pointer: bool = False


@attrs.frozen
class Struct(Schema):
    """
    A Go struct: known fields in declaration order, unknown ones pruned.

    @ivar name: the Go type name (C{FlunderSpec}), also the OpenAPI model name.
    """

    name: str = ""
    fields: tuple[Field, ...] = ()
    doc: str = ""

    def field(self, name: str) -> Field:
        for candidate in self.fields:
            if candidate.name == name:
                return candidate
        raise KeyError(name)

    @property
    def _go(self) -> str:
        return self.go_type or self.name

    def decode(self, value: Any, path: str, owner: str, ctx: DecodeContext) -> Any:
        if not isinstance(value, dict):
            raise DecodeError(
                f"json: cannot unmarshal {go_json_type(value)} into Go struct field "
                f"{owner}.{path} of type {self._go}"
                if path
                else f"json: cannot unmarshal {go_json_type(value)} into Go value "
                f"of type {self._go}"
            )
        known = {f.name: f for f in self.fields}
        decoded: dict[str, Any] = {}
        # Document order, so unknown fields are reported as a client wrote them.
        for key, item in value.items():
            field = known.get(key)
            if field is None:
                ctx.unknown_fields.append(_join(path, key))
            elif item is not None:
                decoded[key] = field.schema.decode(item, _join(path, key), self.name, ctx)
        result: dict[str, Any] = {}
        for field in self.fields:
            always = field.keep_empty or (
                isinstance(field.schema, Struct) and not field.pointer
            )
            if field.name not in decoded:
                if always and isinstance(field.schema, Struct):
                    result[field.name] = field.schema.decode(
                        {}, _join(path, field.name), self.name, ctx
                    )
                continue
            item = decoded[field.name]
            if always or field.pointer or not field.schema.is_zero(item):
                result[field.name] = item
        return result

    def decode_root(self, value: Any, ctx: DecodeContext) -> dict[str, Any]:
        """
        Decode a whole object (path empty).
        """
        result = self.decode(value, "", self.name, ctx)
        assert isinstance(result, dict)
        return result
