# -*- test-case-name: tests.test_table -*-
"""
Tests for L{wardled.api.table}: Tables and partial metadata shaped exactly
as Kubernetes' default table convertor and metadata conversions shape them.
"""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from wardled.api.negotiate import DEFAULT_OUTPUT, encode
from wardled.api.table import (
    COLUMN_DEFINITIONS,
    CREATION_TIMESTAMP_DESCRIPTION,
    NAME_DESCRIPTION,
    TableOptions,
    check_conversion,
    parse_include_object,
    parse_table_options,
    to_partial_metadata,
    to_partial_metadata_list,
    to_table,
)
from wardled.apierrors import StatusError


def flunder(name: str, created: str = "2026-01-02T03:04:05Z", **meta: Any) -> dict[str, Any]:
    """A v1alpha1 Flunder as the registry returns it."""
    return {
        "kind": "Flunder",
        "apiVersion": "wardle.example.com/v1alpha1",
        "metadata": {
            "name": name,
            "namespace": "default",
            "uid": f"uid-{name}",
            "resourceVersion": "7",
            "creationTimestamp": created,
            **meta,
        },
        "spec": {"reference": "x"},
        "status": {},
    }


def partial(name: str, version: str = "v1") -> dict[str, Any]:
    return {
        "kind": "PartialObjectMetadata",
        "apiVersion": f"meta.k8s.io/{version}",
        "metadata": {"name": name, "namespace": "default", "uid": f"uid-{name}",
                     "resourceVersion": "7", "creationTimestamp": "2026-01-02T03:04:05Z"},
    }


class ColumnTests(SynchronousTestCase):
    """
    The two default columns carry the real ObjectMeta docs.
    """

    def test_columns(self) -> None:
        self.assertEqual(COLUMN_DEFINITIONS, [
            {"name": "Name", "type": "string", "format": "name",
             "description": NAME_DESCRIPTION, "priority": 0},
            {"name": "Created At", "type": "date", "format": "",
             "description": CREATION_TIMESTAMP_DESCRIPTION, "priority": 0},
        ])
        self.assertTrue(NAME_DESCRIPTION.startswith("Name must be unique within a namespace."))
        self.assertTrue(NAME_DESCRIPTION.endswith("working-with-objects/names#names"))
        self.assertIn("in UTC.\n\nPopulated by the system. Read-only. Null for lists.",
                      CREATION_TIMESTAMP_DESCRIPTION)


class ToTableTests(SynchronousTestCase):
    """
    L{to_table}.
    """

    def test_list(self) -> None:
        table = to_table([flunder("a"), flunder("b")],
                         list_meta={"resourceVersion": "42", "continue": "tok",
                                    "remainingItemCount": 3})
        self.assertEqual(table, {
            "kind": "Table",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": {"resourceVersion": "42", "continue": "tok", "remainingItemCount": 3},
            "columnDefinitions": COLUMN_DEFINITIONS,
            "rows": [
                {"cells": ["a", "2026-01-02T03:04:05Z"], "object": partial("a")},
                {"cells": ["b", "2026-01-02T03:04:05Z"], "object": partial("b")},
            ],
        })

    def test_exact_json(self) -> None:
        """
        Key order and field presence as Go encodes C{metav1.Table}.
        """
        table = to_table([flunder("a")], list_meta={"resourceVersion": "7"},
                         include_object="None")
        self.assertEqual(
            encode(table, DEFAULT_OUTPUT, False),
            b'{"kind":"Table","apiVersion":"meta.k8s.io/v1","metadata":{"resourceVersion":"7"},'
            b'"columnDefinitions":[{"name":"Name","type":"string","format":"name",'
            b'"description":"Name must be unique within a namespace. Is required when creating '
            b"resources, although some resources may allow a client to request the generation "
            b"of an appropriate name automatically. Name is primarily intended for creation "
            b"idempotence and configuration definition. Cannot be updated. More info: "
            b'https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names",'
            b'"priority":0},{"name":"Created At","type":"date","format":"",'
            b'"description":"CreationTimestamp is a timestamp representing the server time '
            b"when this object was created. It is not guaranteed to be set in happens-before "
            b"order across separate operations. Clients may not set this value. It is "
            b"represented in RFC3339 form and is in UTC.\\n\\nPopulated by the system. "
            b"Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/"
            b'devel/sig-architecture/api-conventions.md#metadata","priority":0}],'
            b'"rows":[{"cells":["a","2026-01-02T03:04:05Z"],"object":null}]}\n',
        )

    def test_empty_list_rows_null(self) -> None:
        self.assertEqual(
            encode(to_table([], list_meta={"resourceVersion": "9", "continue": ""},
                            no_headers=True), DEFAULT_OUTPUT, False),
            b'{"kind":"Table","apiVersion":"meta.k8s.io/v1","metadata":{"resourceVersion":"9"},'
            b'"columnDefinitions":null,"rows":null}\n',
        )

    def test_include_object(self) -> None:
        obj = flunder("a")
        self.assertEqual(to_table([obj], list_meta={}, include_object="Object")["rows"],
                         [{"cells": ["a", "2026-01-02T03:04:05Z"], "object": obj}])
        self.assertEqual(to_table([obj], list_meta={}, include_object="None")["rows"],
                         [{"cells": ["a", "2026-01-02T03:04:05Z"], "object": None}])
        self.assertEqual(to_table([obj], list_meta={}, include_object="")["rows"][0]["object"],
                         partial("a"))

    def test_v1beta1(self) -> None:
        table = to_table([flunder("a")], list_meta={"resourceVersion": "7"}, version="v1beta1")
        self.assertEqual(table["apiVersion"], "meta.k8s.io/v1beta1")
        self.assertEqual(table["rows"][0]["object"], partial("a", "v1beta1"))

    def test_unknown_include_object(self) -> None:
        error = self.assertRaises(StatusError, to_table, [flunder("a")], list_meta={},
                                  include_object="All")
        self.assertEqual((error.code, error.message),
                         (400, 'unrecognized includeObject value: "All"'))

    def test_created_at_cell(self) -> None:
        cells = [row["cells"][1] for row in to_table([
            flunder("utc"),
            flunder("offset", "2026-01-02T03:04:05+02:00"),
            flunder("fraction", "2026-01-02T03:04:05.999Z"),
            flunder("unset", ""),
            flunder("bad", "yesterday"),
        ], list_meta={})["rows"]]
        self.assertEqual(cells, ["2026-01-02T03:04:05Z", "2026-01-02T01:04:05Z",
                                 "2026-01-02T03:04:05Z", "0001-01-01T00:00:00Z", "yesterday"])

    def test_missing_name(self) -> None:
        row = to_table([{"metadata": {"resourceVersion": "5"}}], list_meta={})["rows"][0]
        self.assertEqual(row, {
            "cells": ["", "0001-01-01T00:00:00Z"],
            "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                       "metadata": {"resourceVersion": "5", "creationTimestamp": None}},
        })

    def test_initial_events_end_bookmark_keeps_metadata(self) -> None:
        bookmark = {"kind": "Flunder", "apiVersion": "wardle.example.com/v1alpha1",
                    "metadata": {"resourceVersion": "12",
                                 "annotations": {"k8s.io/initial-events-end": "true"}}}
        row = to_table([bookmark], list_meta={}, include_object="None")["rows"][0]
        self.assertEqual(row["object"]["metadata"], {
            "resourceVersion": "12", "creationTimestamp": None,
            "annotations": {"k8s.io/initial-events-end": "true"}})


class PartialMetadataTests(SynchronousTestCase):
    """
    L{to_partial_metadata} and L{to_partial_metadata_list}.
    """

    def test_field_order_and_omitempty(self) -> None:
        obj = {"metadata": {
            "managedFields": [{"manager": "kubectl"}], "finalizers": [], "labels": {},
            "annotations": {"a": "b"}, "generation": 0, "name": "n", "generateName": "",
            "deletionGracePeriodSeconds": 0, "deletionTimestamp": "2026-01-01T00:00:00Z",
            "uid": "u", "creationTimestamp": "2026-01-01T00:00:00Z", "bogus": 1}}
        result = to_partial_metadata(obj)
        self.assertEqual(list(result), ["kind", "apiVersion", "metadata"])
        self.assertEqual(list(result["metadata"].items()), [
            ("name", "n"), ("uid", "u"), ("creationTimestamp", "2026-01-01T00:00:00Z"),
            ("deletionTimestamp", "2026-01-01T00:00:00Z"), ("deletionGracePeriodSeconds", 0),
            ("annotations", {"a": "b"}), ("managedFields", [{"manager": "kubectl"}]),
        ])

    def test_list(self) -> None:
        self.assertEqual(
            to_partial_metadata_list([flunder("a")], {"resourceVersion": "8", "continue": "c"}),
            {"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1",
             "metadata": {"resourceVersion": "8", "continue": "c"},
             "items": [partial("a")]},
        )

    def test_empty_list_items_null(self) -> None:
        self.assertEqual(
            encode(to_partial_metadata_list([], {"resourceVersion": "8"}, "v1beta1"),
                   DEFAULT_OUTPUT, False),
            b'{"kind":"PartialObjectMetadataList","apiVersion":"meta.k8s.io/v1beta1",'
            b'"metadata":{"resourceVersion":"8"},"items":null}\n',
        )

    def test_remaining_item_count_zero_kept(self) -> None:
        self.assertEqual(
            to_partial_metadata_list([], {"remainingItemCount": 0})["metadata"],
            {"remainingItemCount": 0},
        )


class OptionsTests(SynchronousTestCase):
    """
    C{includeObject} validation.
    """

    def test_valid(self) -> None:
        for value, expected in ((None, "Metadata"), ("", "Metadata"), ("None", "None"),
                                ("Metadata", "Metadata"), ("Object", "Object")):
            self.assertEqual(parse_include_object(value), expected)
        self.assertEqual(parse_table_options("Object"), TableOptions("Object", False))
        self.assertEqual(parse_table_options(None, no_headers=True),
                         TableOptions("Metadata", True))

    def test_invalid(self) -> None:
        for value in ("object", "All", " None"):
            error = self.assertRaises(StatusError, parse_include_object, value)
            self.assertEqual(error.status(), {
                "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": "Unable to convert to Table as requested: includeObject: "
                           f"Invalid value: \"{value}\": must be 'Metadata', 'Object', "
                           "'None', or empty",
                "reason": "BadRequest", "code": 400,
            })


class CheckConversionTests(SynchronousTestCase):
    """
    Metadata conversions that do not fit the response are 406s.
    """

    def test_fits(self) -> None:
        check_conversion(None, is_list=True, type_name="*wardle.FlunderList")
        check_conversion("Table", is_list=False, type_name="*wardle.Flunder")
        check_conversion("PartialObjectMetadata", is_list=False, type_name="*wardle.Flunder")
        check_conversion("PartialObjectMetadataList", is_list=True,
                         type_name="*wardle.FlunderList")

    def test_partial_on_list(self) -> None:
        error = self.assertRaises(StatusError, check_conversion, "PartialObjectMetadata",
                                  is_list=True, type_name="*wardle.FlunderList")
        self.assertEqual(error.status(), {
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": "you requested PartialObjectMetadata, but the requested object is a "
                       "list (*wardle.FlunderList)",
            "reason": "NotAcceptable", "code": 406,
        })

    def test_partial_list_on_object(self) -> None:
        error = self.assertRaises(StatusError, check_conversion, "PartialObjectMetadataList",
                                  is_list=False, type_name="*wardle.Fischer")
        self.assertEqual(
            (error.code, error.message),
            (406, ("you requested PartialObjectMetadataList, but the requested object is "
                   "not a list (*wardle.Fischer)")),
        )
