"""
Field sets, FieldsV1 and managedFields bookkeeping
(L{wardled.registry.fieldpaths}, L{wardled.registry.fieldmanager}).
"""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from wardled import apierrors
from wardled.apis.wardle import FISCHER_V1ALPHA1, FLUNDER_V1BETA1, FLUNDERS
from wardled.registry import fieldpaths
from wardled.registry.fieldmanager import (
    FieldManager,
    decode_managed_fields,
    manager_from_user_agent,
)

V1B = "wardle.example.com/v1beta1"
NOW = 1_780_000_000.0


def flunder(name: str = "f", labels: dict[str, str] | None = None, **spec: str) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "namespace": "default"}
    if labels:
        metadata["labels"] = labels
    return {"metadata": metadata, "spec": dict(spec), "status": {}}


def config(name: str = "f", labels: dict[str, str] | None = None, **spec: str) -> dict[str, Any]:
    return {"apiVersion": V1B, "kind": "Flunder", **flunder(name, labels, **spec)}


class FieldSetTests(SynchronousTestCase):
    def test_struct_fields_and_map_members(self) -> None:
        obj = {
            "kind": "Flunder",
            "metadata": {"name": "f", "uid": "u", "labels": {"a": "1"}, "resourceVersion": "3"},
            "spec": {"flunderReference": "x", "referenceType": "Flunder"},
            "status": {},
        }
        self.assertEqual(
            fieldpaths.field_set(FLUNDER_V1BETA1, obj),
            {
                ("f:metadata", "f:labels"),
                ("f:metadata", "f:labels", "f:a"),
                ("f:spec", "f:flunderReference"),
                ("f:spec", "f:referenceType"),
            },
        )

    def test_atomic_list_is_a_leaf(self) -> None:
        fischer = {"metadata": {"name": "p"}, "disallowedFlunders": ["a", "b"]}
        self.assertEqual(
            fieldpaths.field_set(FISCHER_V1ALPHA1, fischer), {("f:disallowedFlunders",)}
        )

    def test_compare(self) -> None:
        old = flunder(labels={"a": "1", "b": "1"}, flunderReference="x")
        new = flunder(labels={"a": "2", "c": "1"}, flunderReference="x")
        comparison = fieldpaths.compare(FLUNDER_V1BETA1, old, new)
        self.assertEqual(comparison.added, {("f:metadata", "f:labels", "f:c")})
        self.assertEqual(comparison.modified, {("f:metadata", "f:labels", "f:a")})
        self.assertEqual(comparison.removed, {("f:metadata", "f:labels", "f:b")})

    def test_fields_v1_encoding(self) -> None:
        fields = {
            ("f:metadata", "f:labels"),
            ("f:metadata", "f:labels", "f:a"),
            ("f:spec", "f:flunderReference"),
        }
        encoded = fieldpaths.to_fields_v1(fields)
        self.assertEqual(
            encoded,
            {
                "f:metadata": {"f:labels": {".": {}, "f:a": {}}},
                "f:spec": {"f:flunderReference": {}},
            },
        )
        self.assertEqual(list(encoded["f:metadata"]["f:labels"]), [".", "f:a"])
        self.assertEqual(fieldpaths.from_fields_v1(encoded), fields)

    def test_fields_v1_rejects_garbage(self) -> None:
        self.assertRaises(ValueError, fieldpaths.from_fields_v1, {"spec": {}})
        self.assertRaises(TypeError, fieldpaths.from_fields_v1, {"f:spec": 1})

    def test_path_string(self) -> None:
        self.assertEqual(
            fieldpaths.path_string(("f:metadata", "f:labels", "f:app")), ".metadata.labels.app"
        )
        self.assertEqual(fieldpaths.path_string(("f:finalizers", 'v:"x"')), '.finalizers[="x"]')
        self.assertEqual(fieldpaths.path_string(("f:o", 'k:{"uid":"1"}')), '.o[uid="1"]')

    def test_merge(self) -> None:
        live = flunder(labels={"a": "1"}, flunderReference="x", referenceType="Flunder")
        merged = fieldpaths.merge(
            FLUNDER_V1BETA1, live, {"metadata": {"labels": {"b": "2"}}, "spec": {"flunderReference": "y"}}
        )
        self.assertEqual(merged["metadata"]["labels"], {"a": "1", "b": "2"})
        self.assertEqual(merged["spec"], {"flunderReference": "y", "referenceType": "Flunder"})
        self.assertEqual(live["spec"]["flunderReference"], "x")


paths = st.lists(
    st.sampled_from(["f:a", "f:b", "f:c.d", "f:é", "v:\"x\""]), min_size=1, max_size=4
).map(tuple)


class FieldsV1PropertyTests(SynchronousTestCase):
    @settings(max_examples=200, deadline=None)
    @given(st.frozensets(paths, max_size=12))
    def test_round_trip(self, fields: frozenset[tuple[str, ...]]) -> None:
        self.assertEqual(fieldpaths.from_fields_v1(fieldpaths.to_fields_v1(fields)), fields)


class UserAgentTests(SynchronousTestCase):
    def test_prefix(self) -> None:
        self.assertEqual(manager_from_user_agent("kubectl/v1.30.0 (linux/amd64)"), "kubectl")
        self.assertEqual(manager_from_user_agent("a\tb\x7fc/1"), "abc")
        self.assertEqual(manager_from_user_agent(None), "")
        self.assertEqual(len(manager_from_user_agent("x" * 300)), 128)


class FieldManagerTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.now = NOW
        self.manager = FieldManager(FLUNDERS, lambda: self.now)

    def entries(self, obj: dict[str, Any]) -> dict[tuple[str, str, str], frozenset[Any]]:
        return {
            key: entry.fields
            for key, entry in decode_managed_fields(obj["metadata"].get("managedFields")).items()
        }

    def test_create_records_update(self) -> None:
        created = self.manager.update(None, flunder(labels={"a": "1"}), "m", "v1beta1")
        [entry] = created["metadata"]["managedFields"]
        self.assertEqual(
            entry,
            {
                "manager": "m",
                "operation": "Update",
                "apiVersion": V1B,
                "time": "2026-05-28T20:26:40Z",
                "fieldsType": "FieldsV1",
                "fieldsV1": {"f:metadata": {"f:labels": {".": {}, "f:a": {}}}},
            },
        )

    def test_update_takes_changed_fields(self) -> None:
        live = self.manager.update(None, flunder(labels={"a": "1", "b": "1"}), "one", "v1beta1")
        new = copy.deepcopy(live)
        new["metadata"]["labels"] = {"a": "2"}
        updated = self.manager.update(live, new, "two", "v1beta1")
        entries = self.entries(updated)
        self.assertEqual(
            entries[("one", "Update", V1B)], {("f:metadata", "f:labels")}
        )
        self.assertEqual(
            entries[("two", "Update", V1B)], {("f:metadata", "f:labels", "f:a")}
        )

    def test_empty_entries_dropped(self) -> None:
        live = self.manager.update(None, flunder(labels={"a": "1"}), "one", "v1beta1")
        new = copy.deepcopy(live)
        del new["metadata"]["labels"]
        updated = self.manager.update(live, new, "one", "v1beta1")
        self.assertNotIn("managedFields", updated["metadata"])

    def test_noop_keeps_timestamps(self) -> None:
        live = self.manager.update(None, flunder(labels={"a": "1"}), "one", "v1beta1")
        self.now += 100
        updated = self.manager.update(live, copy.deepcopy(live), "one", "v1beta1")
        self.assertEqual(updated["metadata"]["managedFields"], live["metadata"]["managedFields"])

    def test_update_in_other_version_converts_comparison(self) -> None:
        live = self.manager.update(
            None, flunder(flunderReference="x", referenceType="Flunder"), "beta", "v1beta1"
        )
        new = copy.deepcopy(live)
        new["spec"]["flunderReference"] = "y"
        updated = self.manager.update(live, new, "alpha", "v1alpha1")
        entries = self.entries(updated)
        self.assertEqual(entries[("beta", "Update", V1B)], {("f:spec", "f:referenceType")})
        self.assertEqual(
            entries[("alpha", "Update", "wardle.example.com/v1alpha1")],
            {("f:spec", "f:reference")},
        )

    def test_apply_conflict_and_force(self) -> None:
        live = self.manager.apply(None, config(flunderReference="x", referenceType="Flunder"), "a", "v1beta1", False)
        error = self.assertRaises(
            apierrors.StatusError,
            self.manager.apply, live, config(flunderReference="y", referenceType="Flunder"), "b", "v1beta1", False,
        )
        self.assertEqual(error.code, 409)
        forced = self.manager.apply(live, config(flunderReference="y"), "b", "v1beta1", True)
        self.assertEqual(forced["spec"]["flunderReference"], "y")
        entries = self.entries(forced)
        self.assertEqual(entries[("a", "Apply", "")], {("f:spec", "f:referenceType")})
        self.assertEqual(entries[("b", "Apply", "")], {("f:spec", "f:flunderReference")})

    def test_apply_prunes_dropped_fields(self) -> None:
        live = self.manager.apply(None, config(labels={"a": "1", "b": "1"}), "a", "v1beta1", False)
        pruned = self.manager.apply(live, config(labels={"a": "1"}), "a", "v1beta1", False)
        self.assertEqual(pruned["metadata"]["labels"], {"a": "1"})
        emptied = self.manager.apply(pruned, config(), "a", "v1beta1", False)
        self.assertNotIn("labels", emptied["metadata"])
        self.assertNotIn("managedFields", emptied["metadata"])


label_maps = st.dictionaries(st.sampled_from("abcde"), st.sampled_from("12"), max_size=5)


class OwnershipPropertyTests(SynchronousTestCase):
    """
    Whatever sequence of forced applies by two managers: every label present
    is owned by at least one manager, each manager owns only labels present,
    and the last applier owns everything it applied.
    """

    @settings(max_examples=100, deadline=None)
    @given(st.lists(st.tuples(st.sampled_from(["m1", "m2"]), label_maps), min_size=1, max_size=6))
    def test_ownership_invariants(self, steps: list[tuple[str, dict[str, str]]]) -> None:
        manager = FieldManager(FLUNDERS, lambda: NOW)
        live: dict[str, Any] | None = None
        for name, labels in steps:
            live = manager.apply(live, config(labels=labels), name, "v1beta1", True)
        assert live is not None
        present = live["metadata"].get("labels", {})
        self.assertEqual(present.items() >= labels.items(), True)
        owned: set[tuple[str, ...]] = set()
        entries = decode_managed_fields(live["metadata"].get("managedFields"))
        for entry in entries.values():
            label_keys = {p[2][2:] for p in entry.fields if len(p) == 3}
            self.assertLessEqual(label_keys, set(present))
            owned |= entry.fields
        for key in present:
            self.assertIn(("f:metadata", "f:labels", f"f:{key}"), owned)
        last = entries.get((name, "Apply", ""))
        expected = {("f:metadata", "f:labels", f"f:{key}") for key in labels}
        self.assertLessEqual(expected, last.fields if last else frozenset())
