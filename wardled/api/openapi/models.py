# -*- test-case-name: tests.test_openapi -*-
"""
The models (schemas) of the OpenAPI documents, generated from the type
declarations.

No schema is written twice: every model comes from walking the one
declaration of its type (L{wardled.apis.wardle}, L{wardled.apis.meta},
L{wardled.apis.scheme.ResourceType.list_schema}).  This module decides what
each declaration becomes: its model name (Go package and type name, as
kube-openapi names them), whether it is a top-level kind (with TypeMeta and
C{x-kubernetes-group-version-kind}), and how Swagger 2.0 and OpenAPI 3.0
(L{Dialect}) write references, descriptions and defaults.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs

from wardled.apis.meta import (
    API_GROUP,
    API_GROUP_LIST,
    API_RESOURCE,
    API_RESOURCE_LIST,
    DELETE_OPTIONS,
    FIELDS_V1_DOC,
    GROUP_VERSION_FOR_DISCOVERY,
    LIST_META,
    MANAGED_FIELDS_ENTRY,
    OBJECT_META,
    OWNER_REFERENCE,
    PATCH,
    PATCH_DOC,
    PRECONDITIONS,
    SERVER_ADDRESS_BY_CLIENT_CIDR,
    STATUS,
    STATUS_CAUSE,
    STATUS_DETAILS,
    TIME,
    TIME_DOC,
    TYPE_META,
    VERSION_INFO,
)
from wardled.apis.schema import (
    Boolean,
    Field,
    Free,
    Integer,
    List,
    Map,
    Schema,
    String,
    Struct,
)
from wardled.apis.scheme import ResourceType
from wardled.apis.wardle import GROUP, GROUP_VERSIONS, resources_in

#: A JSON object of a document.
Object = dict[str, Any]

META_PACKAGE = "io.k8s.apimachinery.pkg.apis.meta.v1"
VERSION_PACKAGE = "io.k8s.apimachinery.pkg.version"
WARDLE_PACKAGE = "io.k8s.sample-apiserver.pkg.apis.wardle"


# Where models live ---------------------------------------------------------


@attrs.frozen
class NamedType:
    """
    A Go named type that is not a struct (C{metav1.Time}): its own model.

    @ivar package: the OpenAPI package of the model.
    @ivar name: the model's short name.
    @ivar doc: the model's description.
    """

    package: str
    name: str
    doc: str

    @property
    def model_name(self) -> str:
        return f"{self.package}.{self.name}"


#: Non-struct schemas that are models of their own, by their C{go_type}.
NAMED_TYPES: Mapping[str, NamedType] = {
    TIME.go_type: NamedType(META_PACKAGE, "Time", TIME_DOC),
    MANAGED_FIELDS_ENTRY.field("fieldsV1").schema.go_type: NamedType(
        META_PACKAGE, "FieldsV1", FIELDS_V1_DOC
    ),
    PATCH.go_type: NamedType(META_PACKAGE, "Patch", PATCH_DOC),
}

#: The packages of structs that are not wardle types (a wardle struct takes
#: the package of the version whose declaration reaches it).
STRUCT_PACKAGES: Mapping[Struct, str] = {
    **{
        struct: META_PACKAGE
        for struct in (
            OBJECT_META,
            LIST_META,
            OWNER_REFERENCE,
            MANAGED_FIELDS_ENTRY,
            STATUS,
            STATUS_DETAILS,
            STATUS_CAUSE,
            DELETE_OPTIONS,
            PRECONDITIONS,
            API_GROUP_LIST,
            API_GROUP,
            GROUP_VERSION_FOR_DISCOVERY,
            SERVER_ADDRESS_BY_CLIENT_CIDR,
            API_RESOURCE_LIST,
            API_RESOURCE,
        )
    },
    VERSION_INFO: VERSION_PACKAGE,
}

GVK = tuple[str, str, str]


@attrs.frozen
class Kind:
    """
    A top-level kind: the model carries TypeMeta and its group-version-kinds.

    @ivar schema: the declaration as a model shows it (TypeMeta first).
    @ivar gvks: (group, version, kind) triples for
        C{x-kubernetes-group-version-kind}.
    """

    schema: Struct
    gvks: tuple[GVK, ...]


def wardle_package(version: str) -> str:
    return f"{WARDLE_PACKAGE}.{version}"


def _with_type_meta(struct: Struct, doc: str = "") -> Struct:
    return attrs.evolve(struct, fields=(*TYPE_META, *struct.fields), doc=doc or struct.doc)


def _list_declaration(resource: ResourceType, version: str) -> Struct:
    list_schema = resource.list_schema(version)
    return _with_type_meta(
        list_schema, list_schema.doc or f"{resource.list_kind} is a list of "
        f"{resource.kind} objects."
    )


@functools.cache
def kinds() -> Mapping[tuple[str, Struct], Kind]:
    """
    Every top-level kind, by (package, declared schema): the declarations
    of the served kinds (without TypeMeta) and of the meta kinds.
    """
    found: dict[tuple[str, Struct], Kind] = {}
    for version in GROUP_VERSIONS:
        package = wardle_package(version)
        for resource in resources_in(version):
            declared = resource.versions[version].schema
            found[package, declared] = Kind(
                _with_type_meta(declared), ((GROUP, version, resource.kind),)
            )
            found[package, resource.list_schema(version)] = Kind(
                _list_declaration(resource, version),
                ((GROUP, version, resource.list_kind),),
            )
    core = ("", "v1")
    for struct in (STATUS, API_GROUP_LIST, API_GROUP, API_RESOURCE_LIST):
        found[META_PACKAGE, struct] = Kind(struct, ((*core, struct.name),))
    found[META_PACKAGE, DELETE_OPTIONS] = Kind(
        DELETE_OPTIONS,
        ((*core, "DeleteOptions"),)
        + tuple((GROUP, version, "DeleteOptions") for version in GROUP_VERSIONS),
    )
    return found


def gvk_object(gvk: GVK) -> Object:
    """
    A (group, version, kind) triple as C{x-kubernetes-group-version-kind}
    writes it.
    """
    group, version, kind = gvk
    return {"group": group, "kind": kind, "version": version}


# Schemas -------------------------------------------------------------------


@attrs.frozen
class Dialect:
    """
    What differs between the Swagger 2.0 and OpenAPI 3.0 schemas written.

    @ivar ref_prefix: where models live.
    @ivar wrap_refs: put a C{$ref} that has siblings (a description, a
        default) in an C{allOf}, as kube-openapi does for OpenAPI 3.
    """

    ref_prefix: str
    wrap_refs: bool


SWAGGER = Dialect("#/definitions/", wrap_refs=False)
OPENAPI3 = Dialect("#/components/schemas/", wrap_refs=True)


class Models:
    """
    The models of one document, added as the paths and fields reach them.

    @ivar models: model name to schema.
    """

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        self.models: dict[str, Object] = {}
        self._sources: dict[str, object] = {}

    def ref(self, schema: Schema, package: str) -> Object:
        """
        A reference to C{schema}'s model, defining the model on first use.

        @param schema: a L{Struct} or a schema whose C{go_type} is in
            L{NAMED_TYPES}.
        @param package: the package a wardle struct belongs to.
        """
        named = NAMED_TYPES.get(schema.go_type)
        if named is not None:
            name = named.model_name
            self._define(name, schema, lambda: self._named_model(schema, named))
        elif isinstance(schema, Struct):
            package = STRUCT_PACKAGES.get(schema, package)
            kind = kinds().get((package, schema))
            model = kind.schema if kind else schema
            gvks = kind.gvks if kind else ()
            name = f"{package}.{schema.name}"
            self._define(name, model, lambda: self._struct_model(model, package, gvks))
        else:
            raise TypeError(f"{schema!r} is not a model")
        return {"$ref": self.dialect.ref_prefix + name}

    def _define(self, name: str, source: object, build: Callable[[], Object]) -> None:
        known = self._sources.get(name)
        if known is not None:
            if known != source:
                raise ValueError(f"two different declarations of model {name}")
            return
        self._sources[name] = source  # before building: recursion ends here
        self.models[name] = build()

    def _named_model(self, schema: Schema, named: NamedType) -> Object:
        return {"description": named.doc, **_plain_schema(schema)}

    def _struct_model(self, struct: Struct, package: str, gvks: Sequence[GVK]) -> Object:
        model: Object = {"type": "object"}
        if struct.doc:
            model["description"] = struct.doc
        if struct.fields:
            model["properties"] = {
                field.name: self.property(field, package) for field in struct.fields
            }
        required = [field.name for field in struct.fields if field.required]
        if required:
            model["required"] = required
        if gvks:
            model["x-kubernetes-group-version-kind"] = [gvk_object(gvk) for gvk in gvks]
        return model

    def schema(self, schema: Schema, package: str) -> Object:
        """
        The schema of a value: a reference for models, inline otherwise.
        """
        if schema.go_type in NAMED_TYPES or isinstance(schema, Struct):
            return self.ref(schema, package)
        if isinstance(schema, List):
            result: Object = {"type": "array", "items": self.schema(schema.items, package)}
            if schema.list_type:
                result["x-kubernetes-list-type"] = schema.list_type
            return result
        if isinstance(schema, Map):
            return {
                "type": "object",
                "additionalProperties": self.schema(schema.values, package),
            }
        return _plain_schema(schema)

    def property(self, field: Field, package: str) -> Object:
        """
        A struct field's schema: its type, description and Go zero default.
        """
        return self.with_siblings(self.schema(field.schema, package), _field_extras(field))

    def with_siblings(self, schema: Object, siblings: Object) -> Object:
        """
        C{schema} plus C{siblings}; a reference goes into an C{allOf} first
        when the dialect wants it.
        """
        if not siblings:
            return schema
        if "$ref" in schema and self.dialect.wrap_refs:
            return {"allOf": [schema], **siblings}
        return {**schema, **siblings}


def _plain_schema(schema: Schema) -> Object:
    """
    The inline schema of a scalar or free-form value.
    """
    if isinstance(schema, String):
        return {"type": "string", **({"format": schema.format} if schema.format else {})}
    if isinstance(schema, Integer):
        size = schema.go_type if schema.go_type in ("int32", "int64") else "int64"
        return {"type": "integer", "format": size}
    if isinstance(schema, Boolean):
        return {"type": "boolean"}
    if isinstance(schema, Free):
        if schema.must_be_object:
            return {"type": "object"}
        return {"x-kubernetes-preserve-unknown-fields": True}
    raise TypeError(f"no OpenAPI form for {schema!r}")


_ZERO_VALUES: Sequence[tuple[type[Schema], Any]] = (
    (String, ""),
    (Integer, 0),
    (Boolean, False),
)


def _field_extras(field: Field) -> Object:
    """
    A field's C{description} and C{default}.

    The default is Go's zero value where openapi-gen writes one: C{{}} for a
    non-pointer struct (Go always encodes it), the scalar zero for a
    required (no C{omitempty}) scalar; never for pointers, lists, maps or
    named types such as C{Time}.  Unlike openapi-gen, a struct with required
    fields gets no C{{}} default, which its own schema would reject (only
    C{APIGroup.preferredVersion} is concerned).
    """
    extras: Object = {}
    if field.doc:
        extras["description"] = field.doc
    schema = field.schema
    if field.pointer or schema.go_type in NAMED_TYPES:
        return extras
    if isinstance(schema, Struct):
        if not any(member.required for member in schema.fields):
            extras["default"] = {}
    elif field.required or field.keep_empty:
        for schema_type, zero in _ZERO_VALUES:
            if isinstance(schema, schema_type):
                extras["default"] = zero
    return extras

