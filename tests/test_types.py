"""
The wardle types: schema decoding, defaults, conversion, create validation,
storage encoding — one declaration, checked against the reference's rules.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from wardled import apierrors
from wardled.apis.wardle import FISCHERS, FLUNDERS, resources_in, validate_flunder

V1ALPHA1 = "wardle.example.com/v1alpha1"
V1BETA1 = "wardle.example.com/v1beta1"


def internal(version: str, spec: dict[str, Any]) -> dict[str, Any]:
    return FLUNDERS.decode_request(version, {"metadata": {"name": "x"}, "spec": spec}).internal


class DefaultingAndConversionTests(SynchronousTestCase):
    def test_v1alpha1_reference_defaults_to_flunder(self) -> None:
        self.assertEqual(
            internal("v1alpha1", {"reference": "a"})["spec"],
            {"flunderReference": "a", "referenceType": "Flunder"},
        )

    def test_v1alpha1_empty_type_defaults_too(self) -> None:
        self.assertEqual(
            internal("v1alpha1", {"reference": "a", "referenceType": ""})["spec"],
            {"flunderReference": "a", "referenceType": "Flunder"},
        )

    def test_v1alpha1_fischer_reference(self) -> None:
        obj = internal("v1alpha1", {"reference": "f", "referenceType": "Fischer"})
        self.assertEqual(obj["spec"], {"fischerReference": "f", "referenceType": "Fischer"})
        self.assertEqual(
            FLUNDERS.encode("v1alpha1", obj)["spec"], {"reference": "f", "referenceType": "Fischer"}
        )

    def test_v1alpha1_unknown_type_drops_both(self) -> None:
        obj = internal("v1alpha1", {"reference": "a", "referenceType": "Other"})
        self.assertEqual(obj["spec"], {})
        self.assertEqual(validate_flunder(obj), [])

    def test_v1beta1_round_trip(self) -> None:
        spec = {"fischerReference": "f", "referenceType": "Fischer"}
        obj = internal("v1beta1", spec)
        self.assertEqual(FLUNDERS.encode("v1beta1", obj)["spec"], spec)

    def test_empty_spec_and_status_always_emitted(self) -> None:
        encoded = FLUNDERS.encode("v1alpha1", internal("v1alpha1", {}))
        self.assertEqual(list(encoded), ["kind", "apiVersion", "metadata", "spec", "status"])
        self.assertEqual((encoded["spec"], encoded["status"]), ({}, {}))

    def test_list_items_have_no_type(self) -> None:
        listed = FLUNDERS.encode_list("v1beta1", [internal("v1beta1", {})], {"resourceVersion": "3"})
        self.assertEqual(listed["kind"], "FlunderList")
        self.assertNotIn("kind", listed["items"][0])
        self.assertNotIn("apiVersion", listed["items"][0])

    def test_conversions_copy_unless_handed_over(self) -> None:
        """
        A conversion's result shares nothing with its input, so either may
        be changed; handed over (C{owned}), the input's parts are reused.
        """
        obj = internal("v1alpha1", {"reference": "a"})
        obj["metadata"]["labels"] = {"x": "1"}
        for version in FLUNDERS.versions.values():
            copied = version.from_internal(obj)
            copied["metadata"]["labels"]["x"] = "2"
            self.assertEqual(obj["metadata"]["labels"], {"x": "1"}, version.name)
            back = version.to_internal(copied)
            back["metadata"]["labels"]["x"] = "3"
            self.assertEqual(copied["metadata"]["labels"], {"x": "2"}, version.name)
            shared = version.from_internal(obj, owned=True)
            self.assertIs(shared["metadata"], obj["metadata"], version.name)

    def test_fischer_identity(self) -> None:
        obj = FISCHERS.decode_request(
            "v1alpha1", {"metadata": {"name": "f"}, "disallowedFlunders": ["a", "b"]}
        ).internal
        self.assertEqual(
            FISCHERS.encode("v1alpha1", obj),
            {"kind": "Fischer", "apiVersion": V1ALPHA1, "metadata": {"name": "f"},
             "disallowedFlunders": ["a", "b"]},
        )


class DecodeTests(SynchronousTestCase):
    def test_unknown_fields_pruned_and_reported(self) -> None:
        decoded = FLUNDERS.decode_request(
            "v1beta1", {"metadata": {"name": "x", "bogus": 1}, "spec": {"foo": 1}, "extra": True}
        )
        self.assertEqual(decoded.unknown_fields, ["metadata.bogus", "spec.foo", "extra"])
        self.assertNotIn("extra", decoded.internal)

    def test_wrong_type_is_400_in_go_words(self) -> None:
        with self.assertRaises(apierrors.StatusError) as raised:
            FLUNDERS.decode_request("v1alpha1", {"spec": {"reference": 5}})
        self.assertEqual(raised.exception.code, 400)
        self.assertEqual(
            raised.exception.message,
            'Flunder in version "v1alpha1" cannot be handled as a Flunder: json: cannot '
            "unmarshal number into Go struct field FlunderSpec.spec.reference of type string",
        )

    def test_label_value_type(self) -> None:
        with self.assertRaises(apierrors.StatusError) as raised:
            FLUNDERS.decode_request("v1alpha1", {"metadata": {"labels": {"a": 1}}})
        self.assertIn("ObjectMeta.metadata.labels of type string", raised.exception.message)

    def test_api_version_mismatch(self) -> None:
        with self.assertRaises(apierrors.StatusError) as raised:
            FLUNDERS.decode_request("v1alpha1", {"apiVersion": V1BETA1, "kind": "Flunder"})
        self.assertEqual(
            raised.exception.message,
            "the API version in the data (wardle.example.com/v1beta1) does not match the "
            "expected API version (wardle.example.com/v1alpha1)",
        )

    def test_wrong_kind_and_group(self) -> None:
        for body in (
            {"apiVersion": V1ALPHA1, "kind": "Fischer"},
            {"apiVersion": "apps/v1", "kind": "Flunder"},
            {"apiVersion": "wardle.example.com/v9", "kind": "Flunder"},
        ):
            with self.assertRaises(apierrors.StatusError) as raised:
                FLUNDERS.decode_request("v1alpha1", body)
            self.assertEqual(raised.exception.code, 400)
            self.assertIn("cannot be handled as a Flunder", raised.exception.message)

    def test_non_object_body(self) -> None:
        with self.assertRaises(apierrors.StatusError) as raised:
            FLUNDERS.decode_request("v1alpha1", ["not", "an", "object"])
        self.assertEqual(raised.exception.code, 400)
        self.assertIn("cannot unmarshal array", raised.exception.message)

    def test_missing_type_defaults_to_endpoint(self) -> None:
        decoded = FLUNDERS.decode_request("v1beta1", {"metadata": {"name": "x"}})
        self.assertEqual(decoded.internal["metadata"], {"name": "x"})


class ValidationTests(SynchronousTestCase):
    def messages(self, spec: dict[str, str]) -> list[str]:
        return [str(e) for e in validate_flunder({"spec": spec})]

    def test_reference_rules_in_order(self) -> None:
        cases = [
            ({"flunderReference": "a", "fischerReference": "b", "referenceType": "Flunder"},
             ['spec.fischerReference: Invalid value: "b": cannot be set with flunderReference at the same time']),
            ({"flunderReference": "a", "referenceType": "Fischer"},
             ['spec.flunderReference: Invalid value: "a": cannot be set if referenceType is not Flunder']),
            ({"fischerReference": "b", "referenceType": "Flunder"},
             ['spec.fischerReference: Invalid value: "b": cannot be set if referenceType is not Fischer']),
            ({"referenceType": "Fischer"},
             ['spec.fischerReference: Invalid value: "": cannot be empty if referenceType is Fischer']),
            ({"referenceType": "Flunder"},
             ['spec.flunderReference: Invalid value: "": cannot be empty if referenceType is Flunder']),
            ({"referenceType": "Other"},
             ['spec.referenceType: Invalid value: "Other": must be Flunder or Fischer']),
            ({"flunderReference": "a", "referenceType": "Other"},
             ['spec.flunderReference: Invalid value: "a": cannot be set if referenceType is not Flunder',
              'spec.referenceType: Invalid value: "Other": must be Flunder or Fischer']),
            ({"flunderReference": "a", "referenceType": "Flunder"}, []),
            ({}, []),
        ]
        for spec, expected in cases:
            self.assertEqual(self.messages(spec), expected, spec)


class StorageTests(SynchronousTestCase):
    def test_storage_is_v1alpha1_without_resource_version(self) -> None:
        obj = internal("v1beta1", {"flunderReference": "a", "referenceType": "Flunder"})
        obj["metadata"]["resourceVersion"] = "7"
        obj["metadata"]["selfLink"] = "/x"
        stored = json.loads(FLUNDERS.to_storage(obj))
        self.assertEqual(stored["apiVersion"], V1ALPHA1)
        self.assertEqual(stored["metadata"], {"name": "x"})
        self.assertEqual(stored["spec"], {"reference": "a", "referenceType": "Flunder"})
        back = FLUNDERS.from_storage(FLUNDERS.to_storage(obj), 42)
        self.assertEqual(back["metadata"]["resourceVersion"], "42")
        self.assertEqual(back["spec"], obj["spec"])

    def test_reads_reference_written_json(self) -> None:
        # As the Go reference writes it (with managedFields and status).
        data = (
            b'{"kind":"Flunder","apiVersion":"wardle.example.com/v1alpha1","metadata":'
            b'{"name":"my-first-flunder","namespace":"default","uid":"u","creationTimestamp":'
            b'"2026-01-01T00:00:00Z","labels":{"sample-label":"true"},"managedFields":[{"manager":'
            b'"kubectl-create","operation":"Update","apiVersion":"wardle.example.com/v1alpha1",'
            b'"time":"2026-01-01T00:00:00Z","fieldsType":"FieldsV1","fieldsV1":{"f:metadata":{}}}]},'
            b'"spec":{"reference":"x","referenceType":"Flunder"},"status":{}}'
        )
        obj = FLUNDERS.from_storage(data, 9)
        self.assertEqual(obj["metadata"]["managedFields"][0]["manager"], "kubectl-create")
        self.assertEqual(obj["spec"], {"flunderReference": "x", "referenceType": "Flunder"})

    def test_storage_version_hashes_match_reference(self) -> None:
        self.assertEqual(FLUNDERS.storage_version_hash(), "UHqNx5H3K7A=")
        self.assertEqual(FISCHERS.storage_version_hash(), "YS5qRiSxzNM=")

    def test_served_resources(self) -> None:
        self.assertEqual([r.plural for r in resources_in("v1alpha1")], ["fischers", "flunders"])
        self.assertEqual([r.plural for r in resources_in("v1beta1")], ["flunders"])

    def test_deprecation_warning(self) -> None:
        self.assertEqual(
            FLUNDERS.deprecation_warning("v1alpha1"),
            "wardle.example.com/v1alpha1 Flunder is deprecated in v1.3+, unavailable in v1.10+",
        )
        self.assertIsNone(FLUNDERS.deprecation_warning("v1beta1"))
        self.assertEqual(
            FISCHERS.deprecation_warning("v1alpha1"),
            "wardle.example.com/v1alpha1 Fischer is deprecated in v1.3+, unavailable in v1.10+",
        )
