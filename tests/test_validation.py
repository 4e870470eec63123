# -*- test-case-name: tests.test_validation -*-
"""
Tests for L{wardled.apis.validation}: the messages are checked against the
exact texts k8s.io/apimachinery produces.
"""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from wardled.apis.field import ErrorType, FieldError
from wardled.apis.validation import (
    go_json,
    go_quote,
    is_dns1123_label,
    is_dns1123_subdomain,
    is_qualified_name,
    is_valid_label_value,
    is_valid_path_segment_name,
    is_valid_path_segment_prefix,
    regex_error,
    validate_annotations,
    validate_common_update,
    validate_finalizers,
    validate_labels,
    validate_managed_fields,
    validate_object_meta,
    validate_object_meta_update,
    validate_owner_references,
    validate_path_segment_name,
)

LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters "
    "or '-', and must start and end with an alphanumeric character (e.g. 'my-name',"
    "  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)
SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
    "characters, '-' or '.', and must start and end with an alphanumeric character "
    "(e.g. 'example.com', regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
NAME_PART_MSG = (
    "name part must consist of alphanumeric characters, '-', '_' or '.', and must "
    "start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  "
    "or '123-abc', regex used for validation is "
    "'([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
)
LABEL_KEY_MSG = (
    "a valid label key must consist of alphanumeric characters, '-', '_' or '.', "
    "and must start and end with an alphanumeric character (e.g. 'MyName',  or "
    "'my.name',  or '123-abc', regex used for validation is "
    "'([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain "
    "prefix and '/' (e.g. 'example.com/MyName')"
)
LABEL_VALUE_MSG = (
    "a valid label must be an empty string or consist of alphanumeric characters, "
    "'-', '_' or '.', and must start and end with an alphanumeric character (e.g. "
    "'MyValue',  or 'my_value',  or '12345', regex used for validation is "
    "'(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
)

TIME_A = "2024-01-01T00:00:00Z"
TIME_B = "2024-01-02T00:00:00Z"


def texts(errors: list[FieldError]) -> list[str]:
    """
    The errors as Go's C{err.Error()} prints them.
    """
    return [str(error) for error in errors]


def flunder_meta(**extra: Any) -> dict[str, Any]:
    """
    Valid metadata of a namespaced object, with C{extra} keys added.
    """
    meta: dict[str, Any] = {"name": "my-flunder", "namespace": "default"}
    meta.update(extra)
    return meta


def stored_meta(**extra: Any) -> dict[str, Any]:
    """
    Valid metadata of a stored namespaced object, ready to be updated.
    """
    meta = flunder_meta(
        uid="1234", resourceVersion="7", creationTimestamp=TIME_A, generation=2
    )
    meta.update(extra)
    return meta


class RegexErrorTests(SynchronousTestCase):
    """
    Tests for L{regex_error}.
    """

    def test_without_examples(self) -> None:
        self.assertEqual(
            regex_error("must be x", "x+"),
            "must be x (regex used for validation is 'x+')",
        )

    def test_examples_double_space(self) -> None:
        """
        Go joins examples with C{', '} followed by C{' or '}, giving two
        spaces; clients see that literally.
        """
        self.assertEqual(
            regex_error("m", "r", "a", "b"),
            "m (e.g. 'a',  or 'b', regex used for validation is 'r')",
        )


class GoFormattingTests(SynchronousTestCase):
    """
    Tests for L{go_quote} and L{go_json}.
    """

    def test_quote_plain(self) -> None:
        self.assertEqual(go_quote('a"b\\c'), '"a\\"b\\\\c"')

    def test_quote_unicode_printable(self) -> None:
        self.assertEqual(go_quote("함é"), '"함é"')

    def test_quote_control(self) -> None:
        self.assertEqual(
            go_quote("\n\t\a\x01\x7f\u00a0\U000e0001"),
            '"\\n\\t\\a\\x01\\x7f\\u00a0\\U000e0001"',
        )

    def test_json_compact_and_html_escaped(self) -> None:
        self.assertEqual(go_json(["a", "<&>"]), '["a","\\u003c\\u0026\\u003e"]')
        self.assertEqual(go_json({"k": 1, "é": True}), '{"k":1,"é":true}')


class DNS1123LabelTests(SynchronousTestCase):
    """
    Tests for L{is_dns1123_label}.
    """

    def test_valid(self) -> None:
        for value in ["a", "0", "my-name", "123-abc", "a" * 63, "a--b"]:
            self.assertEqual(is_dns1123_label(value), [], value)

    def test_empty(self) -> None:
        self.assertEqual(is_dns1123_label(""), [LABEL_MSG])

    def test_bad_characters(self) -> None:
        for value in ["A", "-a", "a-", "a_b", "a b", "é", "a\n", "\na"]:
            self.assertEqual(is_dns1123_label(value), [LABEL_MSG], repr(value))

    def test_dots(self) -> None:
        """
        A valid subdomain that is not a label only fails for its dots.
        """
        self.assertEqual(is_dns1123_label("a.b"), ["must not contain dots"])

    def test_too_long(self) -> None:
        self.assertEqual(is_dns1123_label("a" * 64), ["must be no more than 63 bytes"])

    def test_too_long_and_bad(self) -> None:
        self.assertEqual(
            is_dns1123_label("A" * 64), ["must be no more than 63 bytes", LABEL_MSG]
        )

    def test_too_long_with_dots(self) -> None:
        self.assertEqual(
            is_dns1123_label("a." * 32 + "a"),
            ["must be no more than 63 bytes", "must not contain dots"],
        )

    def test_length_in_bytes(self) -> None:
        """
        Go counts bytes: 32 two-byte characters are 64 bytes.
        """
        self.assertEqual(
            is_dns1123_label("é" * 32), ["must be no more than 63 bytes", LABEL_MSG]
        )


class DNS1123SubdomainTests(SynchronousTestCase):
    """
    Tests for L{is_dns1123_subdomain}.
    """

    def test_valid(self) -> None:
        for value in ["a", "example.com", "a-b.c-d", "1.2.3", "a" * 253]:
            self.assertEqual(is_dns1123_subdomain(value), [], value)

    def test_invalid(self) -> None:
        for value in [
            "",
            "Example.com",
            "a..b",
            ".a",
            "a.",
            "a_b.com",
            "-a.b",
            "ü.com",
        ]:
            self.assertEqual(is_dns1123_subdomain(value), [SUBDOMAIN_MSG], value)

    def test_too_long(self) -> None:
        self.assertEqual(
            is_dns1123_subdomain("a" * 254), ["must be no more than 253 bytes"]
        )


class QualifiedNameTests(SynchronousTestCase):
    """
    Tests for L{is_qualified_name}.
    """

    def test_valid(self) -> None:
        for value in [
            "a",
            "MyName",
            "my.name",
            "123-abc",
            "a_b",
            "example.com/MyName",
            "k8s.io/a-b_c.d",
            "a" * 63,
            "a" * 253 + "/" + "b" * 63,
        ]:
            self.assertEqual(is_qualified_name(value), [], value)

    def test_empty(self) -> None:
        self.assertEqual(
            is_qualified_name(""), ["name part must be non-empty", NAME_PART_MSG]
        )

    def test_empty_prefix(self) -> None:
        self.assertEqual(is_qualified_name("/a"), ["prefix part must be non-empty"])

    def test_empty_name_after_prefix(self) -> None:
        self.assertEqual(
            is_qualified_name("example.com/"),
            ["name part must be non-empty", NAME_PART_MSG],
        )

    def test_bad_prefix(self) -> None:
        self.assertEqual(
            is_qualified_name("Example.com/a"), ["prefix part " + SUBDOMAIN_MSG]
        )

    def test_long_prefix(self) -> None:
        self.assertEqual(
            is_qualified_name("a" * 254 + "/b"),
            ["prefix part must be no more than 253 bytes"],
        )

    def test_several_slashes(self) -> None:
        self.assertEqual(is_qualified_name("a/b/c"), [LABEL_KEY_MSG])

    def test_bad_name(self) -> None:
        for value in ["-a", "a-", "a b", "a!", "é", "example.com/-a", "a\n"]:
            self.assertEqual(is_qualified_name(value), [NAME_PART_MSG], repr(value))

    def test_name_too_long(self) -> None:
        self.assertEqual(
            is_qualified_name("a" * 64), ["name part must be no more than 63 bytes"]
        )

    def test_everything_wrong(self) -> None:
        self.assertEqual(
            is_qualified_name("A_/" + "-" * 64),
            [
                "prefix part " + SUBDOMAIN_MSG,
                "name part must be no more than 63 bytes",
                NAME_PART_MSG,
            ],
        )


class LabelValueTests(SynchronousTestCase):
    """
    Tests for L{is_valid_label_value}.
    """

    def test_valid(self) -> None:
        for value in ["", "a", "MyValue", "my_value", "12345", "a.b-c_d", "a" * 63]:
            self.assertEqual(is_valid_label_value(value), [], value)

    def test_invalid(self) -> None:
        for value in ["-a", "a-", "a/b", "a b", "ä", "a\n", "_"]:
            self.assertEqual(
                is_valid_label_value(value), [LABEL_VALUE_MSG], repr(value)
            )

    def test_too_long(self) -> None:
        self.assertEqual(
            is_valid_label_value("a" * 64), ["must be no more than 63 bytes"]
        )
        self.assertEqual(
            is_valid_label_value("-" * 64),
            ["must be no more than 63 bytes", LABEL_VALUE_MSG],
        )


class PathSegmentTests(SynchronousTestCase):
    """
    Tests for the path-segment name rule the apiserver applies to names.
    """

    def test_valid_names(self) -> None:
        for value in ["", "a", "UPPER_case", "...", "a.b", "a b", "함", "-"]:
            self.assertEqual(is_valid_path_segment_name(value), [], value)

    def test_dot_names(self) -> None:
        self.assertEqual(is_valid_path_segment_name("."), ["may not be '.'"])
        self.assertEqual(is_valid_path_segment_name(".."), ["may not be '..'"])

    def test_bad_characters(self) -> None:
        self.assertEqual(is_valid_path_segment_name("a/b"), ["may not contain '/'"])
        self.assertEqual(is_valid_path_segment_name("a%b"), ["may not contain '%'"])
        self.assertEqual(
            is_valid_path_segment_name("%/"),
            ["may not contain '/'", "may not contain '%'"],
        )

    def test_prefix(self) -> None:
        """
        A prefix may be C{.} or end in C{-}, since a suffix follows.
        """
        for value in [".", "..", "a-", "-"]:
            self.assertEqual(is_valid_path_segment_prefix(value), [], value)
        self.assertEqual(is_valid_path_segment_prefix("a/"), ["may not contain '/'"])

    def test_name_function(self) -> None:
        self.assertEqual(validate_path_segment_name(".", True), [])
        self.assertEqual(validate_path_segment_name(".", False), ["may not be '.'"])


class ObjectMetaNameTests(SynchronousTestCase):
    """
    Tests for names and namespaces in L{validate_object_meta}.
    """

    def test_valid_namespaced(self) -> None:
        self.assertEqual(validate_object_meta(flunder_meta(), True), [])

    def test_valid_cluster_scoped(self) -> None:
        self.assertEqual(validate_object_meta({"name": "my-fischer"}, False), [])

    def test_name_required(self) -> None:
        self.assertEqual(
            texts(validate_object_meta({"namespace": "default"}, True)),
            ["metadata.name: Required value: name or generateName is required"],
        )

    def test_name_required_even_with_generate_name(self) -> None:
        """
        Name generation has happened before validation; a missing name is
        still an error.
        """
        self.assertEqual(
            texts(validate_object_meta(flunder_meta(name="", generateName="x-"), True)),
            ["metadata.name: Required value: name or generateName is required"],
        )

    def test_null_name(self) -> None:
        self.assertEqual(
            texts(validate_object_meta(flunder_meta(name=None), True)),
            ["metadata.name: Required value: name or generateName is required"],
        )

    def test_empty_metadata(self) -> None:
        errors = validate_object_meta({}, True)
        self.assertEqual(
            texts(errors),
            [
                "metadata.name: Required value: name or generateName is required",
                "metadata.namespace: Required value",
            ],
        )
        self.assertEqual(errors[1].type, ErrorType.REQUIRED)

    def test_path_segment_names_only(self) -> None:
        """
        Names are not DNS names: upper case and underscores are fine.
        """
        self.assertEqual(
            validate_object_meta(flunder_meta(name="My_Flunder"), True), []
        )

    def test_bad_names(self) -> None:
        cases = {
            ".": "may not be '.'",
            "..": "may not be '..'",
            "a/b": "may not contain '/'",
            "a%20": "may not contain '%'",
        }
        for name, detail in cases.items():
            errors = validate_object_meta(flunder_meta(name=name), True)
            self.assertEqual(
                texts(errors), [f'metadata.name: Invalid value: "{name}": {detail}']
            )

    def test_generate_name(self) -> None:
        meta = flunder_meta(name="a.b-xyz12", generateName="a.b-")
        self.assertEqual(validate_object_meta(meta, True), [])
        meta = flunder_meta(name=".abcde", generateName=".")
        self.assertEqual(validate_object_meta(meta, True), [])

    def test_bad_generate_name(self) -> None:
        meta = flunder_meta(name="a/%bcdfg", generateName="a/%")
        self.assertEqual(
            texts(validate_object_meta(meta, True)),
            [
                "metadata.generateName: Invalid value: \"a/%\": may not contain '/'",
                "metadata.generateName: Invalid value: \"a/%\": may not contain '%'",
                "metadata.name: Invalid value: \"a/%bcdfg\": may not contain '/'",
                "metadata.name: Invalid value: \"a/%bcdfg\": may not contain '%'",
            ],
        )

    def test_namespace_must_be_label(self) -> None:
        self.assertEqual(
            texts(validate_object_meta(flunder_meta(namespace="Bad_NS"), True)),
            [f'metadata.namespace: Invalid value: "Bad_NS": {LABEL_MSG}'],
        )
        self.assertEqual(
            texts(validate_object_meta(flunder_meta(namespace="a.b"), True)),
            ['metadata.namespace: Invalid value: "a.b": must not contain dots'],
        )
        self.assertEqual(
            texts(validate_object_meta(flunder_meta(namespace="n" * 64), True)),
            [
                f'metadata.namespace: Invalid value: "{"n" * 64}": must be no more than 63 bytes'
            ],
        )

    def test_namespace_forbidden_on_cluster_scoped(self) -> None:
        errors = validate_object_meta({"name": "f", "namespace": "default"}, False)
        self.assertEqual(
            texts(errors), ["metadata.namespace: Forbidden: not allowed on this type"]
        )
        self.assertEqual(errors[0].type, ErrorType.FORBIDDEN)

    def test_custom_path(self) -> None:
        self.assertEqual(
            texts(validate_object_meta({}, False, "items[0].metadata")),
            [
                "items[0].metadata.name: Required value: name or generateName is required"
            ],
        )

    def test_custom_name_function(self) -> None:
        def no_a(name: str, prefix: bool) -> list[str]:
            return ["no a"] if "a" in name else []

        self.assertEqual(
            texts(
                validate_object_meta(flunder_meta(name="a"), True, name_function=no_a)
            ),
            ['metadata.name: Invalid value: "a": no a'],
        )


class ObjectMetaFieldTests(SynchronousTestCase):
    """
    Tests for the other fields L{validate_object_meta} checks.
    """

    def test_generation(self) -> None:
        self.assertEqual(validate_object_meta(flunder_meta(generation=0), True), [])
        self.assertEqual(
            texts(validate_object_meta(flunder_meta(generation=-1), True)),
            [
                "metadata.generation: Invalid value: -1: must be greater than or equal to 0"
            ],
        )

    def test_labels_valid(self) -> None:
        labels = {"app": "x", "example.com/key": "", "Upper_Case.k": "V_1"}
        self.assertEqual(validate_object_meta(flunder_meta(labels=labels), True), [])

    def test_label_key(self) -> None:
        errors = validate_object_meta(flunder_meta(labels={"bad key": "v"}), True)
        self.assertEqual(
            texts(errors),
            [f'metadata.labels: Invalid value: "bad key": {NAME_PART_MSG}'],
        )

    def test_label_value(self) -> None:
        """
        Bad values are reported at the labels path, not under their key.
        """
        errors = validate_object_meta(flunder_meta(labels={"k": "bad value"}), True)
        self.assertEqual(
            texts(errors),
            [f'metadata.labels: Invalid value: "bad value": {LABEL_VALUE_MSG}'],
        )

    def test_label_key_and_value(self) -> None:
        errors = validate_labels({"a/b/c": "v" * 64}, "l")
        self.assertEqual(
            texts(errors),
            [
                f'l: Invalid value: "a/b/c": {LABEL_KEY_MSG}',
                f'l: Invalid value: "{"v" * 64}": must be no more than 63 bytes',
            ],
        )

    def test_annotation_keys_any_case(self) -> None:
        annotations = {"Example.COM/Some_Key": "anything at all / %", "K": ""}
        self.assertEqual(
            validate_object_meta(flunder_meta(annotations=annotations), True), []
        )

    def test_annotation_key_invalid(self) -> None:
        """
        The original key is reported, although the lowered one is checked.
        """
        errors = validate_annotations({"Bad Key": "v"}, "metadata.annotations")
        self.assertEqual(
            texts(errors),
            [f'metadata.annotations: Invalid value: "Bad Key": {NAME_PART_MSG}'],
        )

    def test_annotation_key_uppercase_prefix_lowered(self) -> None:
        self.assertEqual(validate_annotations({"EXAMPLE.com/x": ""}, "a"), [])

    def test_annotation_key_dotted_capital_i(self) -> None:
        """
        Go lowers U+0130 to a plain C{i}, so the key is a valid name.
        """
        self.assertEqual(validate_annotations({"\u0130": ""}, "a"), [])

    def test_annotations_size_limit(self) -> None:
        at_limit = {"a": "v" * (262144 - 1)}
        self.assertEqual(validate_annotations(at_limit, "metadata.annotations"), [])
        over = {"a": "v" * 262144}
        errors = validate_annotations(over, "metadata.annotations")
        self.assertEqual(
            texts(errors),
            ["metadata.annotations: Too long: may not be more than 262144 bytes"],
        )
        self.assertEqual(errors[0].type, ErrorType.TOO_LONG)

    def test_annotations_size_counts_bytes_of_keys_and_values(self) -> None:
        split = {"a": "v" * 131072, "b": "é" * 65536}
        self.assertEqual(
            texts(validate_annotations(split, "x")),
            ["x: Too long: may not be more than 262144 bytes"],
        )

    def test_owner_reference_valid(self) -> None:
        reference = {"apiVersion": "v1", "kind": "Pod", "name": "p", "uid": "u"}
        self.assertEqual(validate_owner_references([reference], "o"), [])
        reference = dict(reference, apiVersion="wardle.example.com/v1alpha1")
        self.assertEqual(validate_owner_references([reference], "o"), [])

    def test_owner_reference_required_fields(self) -> None:
        errors = validate_object_meta(flunder_meta(ownerReferences=[{}]), True)
        self.assertEqual(
            texts(errors),
            [
                "metadata.ownerReferences[0].apiVersion: Required value: must not be empty",
                "metadata.ownerReferences[0].kind: Required value: must not be empty",
                "metadata.ownerReferences[0].name: Required value: must not be empty",
                "metadata.ownerReferences[0].uid: Required value: must not be empty",
            ],
        )

    def test_owner_reference_bad_api_version(self) -> None:
        for api_version in ["a/b/c", "apps/", "/"]:
            reference = {
                "apiVersion": api_version,
                "kind": "K",
                "name": "n",
                "uid": "u",
            }
            self.assertEqual(
                texts(validate_owner_references([{}, reference], "o")[4:]),
                [
                    (
                        f'o[1].apiVersion: Invalid value: "{api_version}": '
                        "must be <group>/<version> or <version>"
                    )
                ],
            )

    def test_owner_reference_banned(self) -> None:
        reference = {"apiVersion": "v1", "kind": "Event", "name": "e", "uid": "u"}
        self.assertEqual(
            texts(validate_owner_references([reference], "o")),
            [
                (
                    'o[0]: Invalid value: {"apiVersion":"v1","kind":"Event","name":"e",'
                    '"uid":"u"}: /v1, Kind=Event is disallowed from being an owner'
                )
            ],
        )

    def test_one_controller(self) -> None:
        first = {
            "apiVersion": "v1",
            "kind": "A",
            "name": "a",
            "uid": "1",
            "controller": True,
        }
        second = dict(first, kind="B", name="b", uid="2", blockOwnerDeletion=False)
        third = dict(first, kind="C", name="c", uid="3", controller=False)
        self.assertEqual(validate_owner_references([first, third], "o"), [])
        errors = validate_owner_references(
            [first, third, second], "metadata.ownerReferences"
        )
        self.assertEqual(
            texts(errors),
            [
                (
                    "metadata.ownerReferences: Invalid value: "
                    '[{"apiVersion":"v1","kind":"A","name":"a","uid":"1","controller":true},'
                    '{"apiVersion":"v1","kind":"C","name":"c","uid":"3","controller":false},'
                    '{"apiVersion":"v1","kind":"B","name":"b","uid":"2","controller":true,'
                    '"blockOwnerDeletion":false}]: '
                    'Only one reference can have Controller set to true. Found "true" in '
                    "references for A/a and B/b"
                )
            ],
        )

    def test_finalizers_valid(self) -> None:
        finalizers = ["orphan", "example.com/cleanup", "example.com/cleanup"]
        self.assertEqual(
            validate_object_meta(flunder_meta(finalizers=finalizers), True), []
        )

    def test_finalizer_name(self) -> None:
        """
        Finalizer errors carry no index.
        """
        errors = validate_finalizers(["ok", "not ok"], "metadata.finalizers")
        self.assertEqual(
            texts(errors),
            [f'metadata.finalizers: Invalid value: "not ok": {NAME_PART_MSG}'],
        )

    def test_conflicting_finalizers(self) -> None:
        errors = validate_object_meta(
            flunder_meta(finalizers=["foregroundDeletion", "x", "orphan"]), True
        )
        self.assertEqual(
            texts(errors),
            [
                (
                    'metadata.finalizers: Invalid value: ["foregroundDeletion","x","orphan"]: '
                    "finalizer orphan and foregroundDeletion cannot be both set"
                )
            ],
        )

    def test_managed_fields_valid(self) -> None:
        entries = [
            {"manager": "kubectl", "operation": "Apply", "fieldsType": "FieldsV1"},
            {"manager": "", "operation": "Update"},
        ]
        self.assertEqual(validate_managed_fields(entries, "m"), [])

    def test_managed_fields_operation(self) -> None:
        errors = validate_object_meta(
            flunder_meta(
                managedFields=[{"operation": "Apply"}, {}, {"operation": "Patch"}]
            ),
            True,
        )
        self.assertEqual(
            texts(errors),
            [
                "metadata.managedFields[1].operation: Required value: must not be empty",
                (
                    'metadata.managedFields[2].operation: Unsupported value: "Patch": '
                    'supported values: "Apply", "Update"'
                ),
            ],
        )

    def test_managed_fields_type(self) -> None:
        errors = validate_managed_fields(
            [{"operation": "Update", "fieldsType": "FieldsV2"}], "m"
        )
        self.assertEqual(
            texts(errors),
            ['m[0].fieldsType: Invalid value: "FieldsV2": must be `FieldsV1`'],
        )

    def test_managed_fields_manager(self) -> None:
        errors = validate_managed_fields(
            [{"operation": "Update", "manager": "m" * 129}], "m"
        )
        self.assertEqual(
            texts(errors), ["m[0].manager: Too long: may not be more than 128 bytes"]
        )
        errors = validate_managed_fields(
            [{"operation": "Update", "manager": "é\x07"}], "m"
        )
        self.assertEqual(len(errors), 1)
        self.assertEqual(
            (errors[0].type, errors[0].field, errors[0].value, errors[0].detail),
            (
                ErrorType.INVALID,
                "m[0].manager",
                "é\x07",
                "invalid character U+0007 (at position 2)",
            ),
        )

    def test_managed_fields_subresource(self) -> None:
        entry = {"operation": "Update", "subresource": "s" * 256}
        self.assertEqual(validate_managed_fields([entry], "m"), [])
        entry["subresource"] = "s" * 257
        self.assertEqual(
            texts(validate_managed_fields([entry], "m")),
            ["m[0].subresource: Too long: may not be more than 256 bytes"],
        )

    def test_error_order(self) -> None:
        """
        Errors come in Go's order: generateName, name, namespace,
        generation, labels, annotations, owner references, finalizers,
        managed fields.
        """
        meta = {
            "managedFields": [{}],
            "finalizers": ["a b"],
            "ownerReferences": [{"apiVersion": "v1", "kind": "K", "name": "n"}],
            "annotations": {"a b": ""},
            "labels": {"a b": ""},
            "generation": -5,
            "namespace": "A",
            "name": ".",
            "generateName": "/",
        }
        self.assertEqual(
            [error.field for error in validate_object_meta(meta, True)],
            [
                "metadata.generateName",
                "metadata.name",
                "metadata.namespace",
                "metadata.generation",
                "metadata.labels",
                "metadata.annotations",
                "metadata.ownerReferences[0].uid",
                "metadata.finalizers",
                "metadata.managedFields[0].operation",
            ],
        )


class ObjectMetaUpdateTests(SynchronousTestCase):
    """
    Tests for L{validate_object_meta_update}.
    """

    def test_unchanged(self) -> None:
        self.assertEqual(validate_object_meta_update(stored_meta(), stored_meta()), [])

    def test_resource_version_required(self) -> None:
        errors = validate_object_meta_update(
            stored_meta(resourceVersion=""), stored_meta()
        )
        self.assertEqual(
            texts(errors),
            [
                'metadata.resourceVersion: Invalid value: "": must be specified for an update'
            ],
        )

    def test_immutable_identity(self) -> None:
        new = stored_meta(name="other", namespace="elsewhere", uid="5678")
        self.assertEqual(
            texts(validate_object_meta_update(new, stored_meta())),
            [
                'metadata.name: Invalid value: "other": field is immutable',
                'metadata.namespace: Invalid value: "elsewhere": field is immutable',
                'metadata.uid: Invalid value: "5678": field is immutable',
            ],
        )

    def test_immutable_uid_removed(self) -> None:
        self.assertEqual(
            texts(validate_object_meta_update(stored_meta(uid=None), stored_meta())),
            ['metadata.uid: Invalid value: "": field is immutable'],
        )

    def test_creation_timestamp(self) -> None:
        new = stored_meta(creationTimestamp=TIME_B)
        self.assertEqual(
            texts(validate_object_meta_update(new, stored_meta())),
            [
                f'metadata.creationTimestamp: Invalid value: "{TIME_B}": field is immutable'
            ],
        )

    def test_creation_timestamp_removed(self) -> None:
        new = stored_meta(creationTimestamp=None)
        self.assertEqual(
            texts(validate_object_meta_update(new, stored_meta())),
            ["metadata.creationTimestamp: Invalid value: null: field is immutable"],
        )

    def test_creation_timestamp_same_instant(self) -> None:
        """
        Times compare as instants, as Go's semantic equality does.
        """
        new = stored_meta(creationTimestamp="2024-01-01T01:00:00+01:00")
        self.assertEqual(validate_object_meta_update(new, stored_meta()), [])

    def test_creation_timestamp_reported_in_utc(self) -> None:
        new = stored_meta(creationTimestamp="2024-01-02T01:00:00.5+01:00")
        self.assertEqual(
            texts(validate_object_meta_update(new, stored_meta())),
            [
                f'metadata.creationTimestamp: Invalid value: "{TIME_B}": field is immutable'
            ],
        )

    def test_deletion_timestamp(self) -> None:
        new = stored_meta(deletionTimestamp=TIME_B)
        self.assertEqual(
            texts(validate_object_meta_update(new, stored_meta())),
            [
                f'metadata.deletionTimestamp: Invalid value: "{TIME_B}": field is immutable'
            ],
        )
        old = stored_meta(deletionTimestamp=TIME_B)
        self.assertEqual(
            texts(validate_object_meta_update(stored_meta(), old)),
            ["metadata.deletionTimestamp: Invalid value: null: field is immutable"],
        )

    def test_deletion_grace_period(self) -> None:
        """
        Absent and zero differ: Go compares the pointers' targets.
        """
        new = stored_meta(deletionGracePeriodSeconds=0)
        self.assertEqual(
            texts(validate_object_meta_update(new, stored_meta())),
            [
                "metadata.deletionGracePeriodSeconds: Invalid value: 0: field is immutable"
            ],
        )
        old = stored_meta(deletionGracePeriodSeconds=30)
        self.assertEqual(
            texts(validate_object_meta_update(stored_meta(), old)),
            [
                "metadata.deletionGracePeriodSeconds: Invalid value: null: field is immutable"
            ],
        )
        self.assertEqual(validate_object_meta_update(old, old), [])

    def test_generation(self) -> None:
        self.assertEqual(
            validate_object_meta_update(stored_meta(generation=3), stored_meta()), []
        )
        self.assertEqual(
            texts(
                validate_object_meta_update(stored_meta(generation=1), stored_meta())
            ),
            ["metadata.generation: Invalid value: 1: must not be decremented"],
        )
        self.assertEqual(
            texts(
                validate_object_meta_update(stored_meta(generation=-1), stored_meta())
            ),
            [
                "metadata.generation: Invalid value: -1: must be greater than or equal to 0",
                "metadata.generation: Invalid value: -1: must not be decremented",
            ],
        )

    def test_finalizers_while_deleting(self) -> None:
        old = stored_meta(deletionTimestamp=TIME_B, finalizers=["a"])
        new = dict(old, finalizers=["c", "a", "b"])
        errors = validate_object_meta_update(new, old)
        self.assertEqual(
            texts(errors),
            [
                (
                    "metadata.finalizers: Forbidden: no new finalizers can be added if the "
                    'object is being deleted, found new finalizers []string{"b", "c"}'
                )
            ],
        )
        self.assertEqual(errors[0].type, ErrorType.FORBIDDEN)

    def test_finalizers_removed_while_deleting(self) -> None:
        old = stored_meta(deletionTimestamp=TIME_B, finalizers=["a", "b"])
        self.assertEqual(
            validate_object_meta_update(dict(old, finalizers=["b"]), old), []
        )
        self.assertEqual(
            validate_object_meta_update(dict(old, finalizers=None), old), []
        )

    def test_finalizers_added_when_not_deleting(self) -> None:
        new = stored_meta(finalizers=["x"])
        self.assertEqual(validate_object_meta_update(new, stored_meta()), [])

    def test_new_metadata_checked(self) -> None:
        new = stored_meta(
            labels={"k": "-"},
            annotations={"a b": ""},
            ownerReferences=[{"apiVersion": "v1", "kind": "K", "name": "n", "uid": "u"}]
            * 2,
            managedFields=[{"operation": "x"}],
            finalizers=["not checked here"],
        )
        self.assertEqual(
            [error.field for error in validate_object_meta_update(new, stored_meta())],
            [
                "metadata.labels",
                "metadata.annotations",
                "metadata.managedFields[0].operation",
            ],
        )

    def test_common_update(self) -> None:
        """
        The apiserver runs the create checks on the new metadata first.
        """
        old = stored_meta()
        new = stored_meta(name="a/b", resourceVersion="")
        self.assertEqual(
            texts(validate_common_update(new, old, True)),
            [
                "metadata.name: Invalid value: \"a/b\": may not contain '/'",
                'metadata.resourceVersion: Invalid value: "": must be specified for an update',
                'metadata.name: Invalid value: "a/b": field is immutable',
            ],
        )

    def test_common_update_cluster_scoped(self) -> None:
        old = {"name": "f", "resourceVersion": "3"}
        self.assertEqual(validate_common_update(dict(old), old, False), [])
        self.assertEqual(
            texts(validate_common_update(dict(old, namespace="x"), old, False)),
            [
                "metadata.namespace: Forbidden: not allowed on this type",
                'metadata.namespace: Invalid value: "x": field is immutable',
            ],
        )
