# -*- test-case-name: tests.test_table -*-
"""
Server-side printing: C{meta.k8s.io} Table, PartialObjectMetadata and
PartialObjectMetadataList responses.

kubectl asks every server for Tables (C{Accept:
application/json;as=Table;v=v1;g=meta.k8s.io,...}) and prints whatever
columns come back.  The wardle resources use Kubernetes' default table
convertor (C{rest.NewDefaultTableConvertor}): two columns, C{Name} and
C{Created At}, described with the real C{ObjectMeta} field docs.  The
shapes here are what Go's C{encoding/json} makes of the Go structs, nil
slices included: an empty list gives C{"rows":null}, a Table without headers
(a watch's events after the first) gives C{"columnDefinitions":null}, and a
row with C{includeObject=None} gives C{"object":null}.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from wardled import apierrors
from wardled.apis import field

INCLUDE_NONE = "None"
INCLUDE_METADATA = "Metadata"
INCLUDE_OBJECT = "Object"
_INCLUDE_POLICIES = (INCLUDE_METADATA, INCLUDE_NONE, INCLUDE_OBJECT, "")

#: C{metav1.ObjectMeta{}.SwaggerDoc()["name"]}
NAME_DESCRIPTION = (
    "Name must be unique within a namespace. Is required when creating resources, "
    "although some resources may allow a client to request the generation of an "
    "appropriate name automatically. Name is primarily intended for creation "
    "idempotence and configuration definition. Cannot be updated. More info: "
    "https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names"
)
#: C{metav1.ObjectMeta{}.SwaggerDoc()["creationTimestamp"]}
CREATION_TIMESTAMP_DESCRIPTION = (
    "CreationTimestamp is a timestamp representing the server time when this "
    "object was created. It is not guaranteed to be set in happens-before order "
    "across separate operations. Clients may not set this value. It is represented "
    "in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for "
    "lists. More info: https://git.k8s.io/community/contributors/devel/"
    "sig-architecture/api-conventions.md#metadata"
)

#: The default convertor's columns, keys in Go's field order.
COLUMN_DEFINITIONS: list[dict[str, Any]] = [
    {"name": "Name", "type": "string", "format": "name",
     "description": NAME_DESCRIPTION, "priority": 0},
    {"name": "Created At", "type": "date", "format": "",
     "description": CREATION_TIMESTAMP_DESCRIPTION, "priority": 0},
]

_ZERO_TIME = "0001-01-01T00:00:00Z"
_INITIAL_EVENTS_END = "k8s.io/initial-events-end"

# ObjectMeta's JSON fields in Go's order, and ListMeta's.
_OBJECT_META_FIELDS = (
    "name", "generateName", "namespace", "selfLink", "uid", "resourceVersion",
    "generation", "creationTimestamp", "deletionTimestamp",
    "deletionGracePeriodSeconds", "labels", "annotations", "ownerReferences",
    "finalizers", "managedFields",
)
_LIST_META_FIELDS = ("selfLink", "resourceVersion", "continue", "remainingItemCount")
# Pointer fields: omitted only when absent, so a 0 is kept.
_POINTER_FIELDS = frozenset({"deletionTimestamp", "deletionGracePeriodSeconds",
                             "remainingItemCount"})


@attrs.frozen
class TableOptions:
    """
    C{metav1.TableOptions}.

    @ivar include_object: C{"None"}, C{"Metadata"} (also for C{""}) or
        C{"Object"}: what each row carries besides its cells.
    @ivar no_headers: leave out C{columnDefinitions}.  Not a query parameter
        (Go's field is C{json:"-"}); Kubernetes sets it for every watch event
        after the first.
    """

    include_object: str = INCLUDE_METADATA
    no_headers: bool = False


def parse_include_object(value: str | None) -> str:
    """
    Validate the C{includeObject} query parameter, as
    C{ValidateTableOptions} does when a Table is asked for.

    @param value: the first C{includeObject} value, or L{None}.
    @return: C{"None"}, C{"Metadata"} or C{"Object"} (empty means
        C{"Metadata"}).
    @raise wardled.apierrors.StatusError: 400 for anything else.
    """
    if value is None or value == "":
        return INCLUDE_METADATA
    if value not in _INCLUDE_POLICIES:
        error = field.invalid(
            "includeObject", value, "must be 'Metadata', 'Object', 'None', or empty")
        raise apierrors.bad_request(f"Unable to convert to Table as requested: {error}")
    return value


def parse_table_options(include_object: str | None, no_headers: bool = False) -> TableOptions:
    """
    The L{TableOptions} of a Table request.

    @param include_object: the C{includeObject} query value, or L{None}.
    @param no_headers: whether to leave out the column definitions.
    @return: the options.
    @raise wardled.apierrors.StatusError: 400 for a bad C{includeObject}.
    """
    return TableOptions(parse_include_object(include_object), no_headers)


def to_table(
    objects: Sequence[Mapping[str, Any]],
    *,
    list_meta: Mapping[str, Any],
    include_object: str = INCLUDE_METADATA,
    no_headers: bool = False,
    version: str = "v1",
) -> dict[str, Any]:
    """
    The default table convertor's Table.

    @param objects: the objects, each a full versioned object with
        C{metadata}.  For a single-object response pass a one-item list.
    @param list_meta: the list's C{resourceVersion}, C{continue} and
        C{remainingItemCount}; for a single object, C{{"resourceVersion":
        <the object's>}}, as Kubernetes does.
    @param include_object: what each row's C{object} is: C{"Metadata"} a
        PartialObjectMetadata, C{"Object"} the object, C{"None"} null.
    @param no_headers: leave out C{columnDefinitions} (it is then null).
    @param version: the C{meta.k8s.io} version, C{"v1"} or C{"v1beta1"}.
    @return: the Table.
    @raise wardled.apierrors.StatusError: 400 for an unknown
        C{include_object}, as C{asTable} words it.
    """
    rows = [_row(obj, include_object, version) for obj in objects]
    return {
        "kind": "Table",
        "apiVersion": f"meta.k8s.io/{version}",
        "metadata": _list_meta(list_meta),
        "columnDefinitions": None if no_headers else [dict(c) for c in COLUMN_DEFINITIONS],
        "rows": rows or None,
    }


def _row(obj: Mapping[str, Any], include_object: str, version: str) -> dict[str, Any]:
    metadata = obj.get("metadata") or {}
    cells = [metadata.get("name", ""), _created_at(metadata.get("creationTimestamp"))]
    annotations = metadata.get("annotations") or {}
    if include_object in (INCLUDE_METADATA, "") or annotations.get(_INITIAL_EVENTS_END) == "true":
        row_object: Any = to_partial_metadata(obj, version)
    elif include_object == INCLUDE_OBJECT:
        row_object = obj
    elif include_object == INCLUDE_NONE:
        row_object = None
    else:
        raise apierrors.bad_request(
            f"unrecognized includeObject value: {field.go_quote(include_object)}")
    return {"cells": cells, "object": row_object}


def _created_at(timestamp: Any) -> str:
    """
    The C{Created At} cell: C{creationTimestamp.UTC().Format(time.RFC3339)},
    the zero time when unset.  An unparsable value is shown as it is.
    """
    if not timestamp:
        return _ZERO_TIME
    try:
        parsed = datetime.datetime.fromisoformat(str(timestamp).replace("z", "Z"))
    except ValueError:
        return str(timestamp)
    if parsed.tzinfo is None:
        return str(timestamp)
    utc = parsed.astimezone(datetime.UTC)
    return (f"{utc.year:04d}-{utc.month:02d}-{utc.day:02d}T"
            f"{utc.hour:02d}:{utc.minute:02d}:{utc.second:02d}Z")


def to_partial_metadata(obj: Mapping[str, Any], version: str = "v1") -> dict[str, Any]:
    """
    C{meta.AsPartialObjectMetadata}: the object's metadata alone, as Go
    encodes an C{ObjectMeta} (fields in Go's order, empty ones left out,
    C{creationTimestamp} null when unset).

    @param obj: a full object.
    @param version: the C{meta.k8s.io} version.
    @return: the PartialObjectMetadata.
    """
    return {
        "kind": "PartialObjectMetadata",
        "apiVersion": f"meta.k8s.io/{version}",
        "metadata": _object_meta(obj.get("metadata") or {}),
    }


def to_partial_metadata_list(
    objects: Sequence[Mapping[str, Any]],
    list_meta: Mapping[str, Any],
    version: str = "v1",
) -> dict[str, Any]:
    """
    C{asPartialObjectMetadataList}: a list's metadata and each item's.

    @param objects: the items, full objects.
    @param list_meta: the list's C{resourceVersion}, C{continue},
        C{remainingItemCount}.
    @param version: the C{meta.k8s.io} version.
    @return: the PartialObjectMetadataList; C{items} is null when empty, as
        Go's nil slice encodes.
    """
    return {
        "kind": "PartialObjectMetadataList",
        "apiVersion": f"meta.k8s.io/{version}",
        "metadata": _list_meta(list_meta),
        "items": [to_partial_metadata(obj, version) for obj in objects] or None,
    }


def check_conversion(as_kind: str | None, *, is_list: bool, type_name: str) -> None:
    """
    Refuse a metadata conversion that does not fit the response, as
    C{asPartialObjectMetadata(List)} does (406).  Tables fit both.

    @param as_kind: the negotiated C{Output.as_kind}.
    @param is_list: the response is a list.
    @param type_name: the Go type Kubernetes would name, e.g.
        C{*wardle.FlunderList} (the internal type's package is C{wardle}).
    @raise wardled.apierrors.StatusError: 406.
    """
    if as_kind == "PartialObjectMetadata" and is_list:
        message = ("you requested PartialObjectMetadata, but the requested object "
                   f"is a list ({type_name})")
    elif as_kind == "PartialObjectMetadataList" and not is_list:
        message = ("you requested PartialObjectMetadataList, but the requested "
                   f"object is not a list ({type_name})")
    else:
        return
    raise apierrors.StatusError(406, "NotAcceptable", message)


def _is_empty(name: str, value: Any) -> bool:
    """Go's C{omitempty}: nil pointers, and zero values of the rest."""
    if value is None:
        return True
    if name in _POINTER_FIELDS:
        return False
    if isinstance(value, (str, dict, list)):
        return not value
    return value == 0 and not isinstance(value, bool)


def _object_meta(metadata: Mapping[str, Any]) -> dict[str, Any]:
    encoded: dict[str, Any] = {}
    for name in _OBJECT_META_FIELDS:
        value = metadata.get(name)
        if name == "creationTimestamp":
            encoded[name] = value or None
        elif not _is_empty(name, value):
            encoded[name] = value
    return encoded


def _list_meta(list_meta: Mapping[str, Any]) -> dict[str, Any]:
    return {
        name: list_meta[name]
        for name in _LIST_META_FIELDS
        if not _is_empty(name, list_meta.get(name))
    }
