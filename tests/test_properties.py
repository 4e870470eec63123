"""
Property-based tests (hypothesis): merge patch, JSON patch and conversion
round trips hold for generated inputs, not just the examples.
"""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from wardled.api.patch import merge_patch
from wardled.apis.wardle import FISCHERS, FLUNDERS

keys = st.text(alphabet="abcxyz", min_size=1, max_size=3)
scalars = st.one_of(st.integers(-5, 5), st.booleans(), st.text(max_size=4))
documents = st.recursive(
    scalars, lambda children: st.dictionaries(keys, children, max_size=4), max_leaves=12
)
objects = st.dictionaries(keys, documents, max_size=5)
patches = st.recursive(
    st.one_of(scalars, st.none()),
    lambda children: st.dictionaries(keys, children, max_size=4),
    max_leaves=12,
)
names = st.text(alphabet="abcdefghij-", min_size=1, max_size=10)


def without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: without_nulls(v) for k, v in value.items() if v is not None}
    return value


class MergePatchProperties(SynchronousTestCase):
    @given(objects, patches)
    def test_idempotent(self, target: dict[str, Any], patch: Any) -> None:
        once = merge_patch(target, patch)
        self.assertEqual(merge_patch(once, patch), once)

    @given(objects, patches)
    def test_does_not_mutate_inputs(self, target: dict[str, Any], patch: Any) -> None:
        target_copy, patch_copy = copy.deepcopy(target), copy.deepcopy(patch)
        merge_patch(target, patch)
        self.assertEqual((target, patch), (target_copy, patch_copy))

    @given(patches)
    def test_into_empty_is_patch_without_nulls(self, patch: Any) -> None:
        self.assertEqual(merge_patch({}, patch), without_nulls(patch))

    @given(objects, keys)
    def test_null_removes(self, target: dict[str, Any], key: str) -> None:
        self.assertNotIn(key, merge_patch(target, {key: None}))


class JSONPatchProperties(SynchronousTestCase):
    @given(objects, keys, documents)
    def test_add_then_remove_restores(self, target: dict[str, Any], key: str, value: Any) -> None:
        if key in target:
            return
        added = jsonpatch.apply_patch(target, [{"op": "add", "path": f"/{key}", "value": value}])
        self.assertEqual(added[key], value)
        restored = jsonpatch.apply_patch(added, [{"op": "remove", "path": f"/{key}"}])
        self.assertEqual(restored, target)


valid_specs = st.one_of(
    st.just({}),
    st.builds(lambda n: {"flunderReference": n, "referenceType": "Flunder"}, names),
    st.builds(lambda n: {"fischerReference": n, "referenceType": "Fischer"}, names),
)
labels = st.dictionaries(st.text(alphabet="abc", min_size=1, max_size=3), names, max_size=3)


class ConversionProperties(SynchronousTestCase):
    @settings(max_examples=200)
    @given(names, labels, valid_specs)
    def test_flunder_round_trips_through_every_version(
        self, name: str, labels: dict[str, str], spec: dict[str, str]
    ) -> None:
        body = {"metadata": {"name": name, "labels": labels}, "spec": spec}
        internal = FLUNDERS.decode_request("v1beta1", body).internal
        for version in ("v1alpha1", "v1beta1"):
            versioned = FLUNDERS.encode(version, internal)
            again = FLUNDERS.decode_request(version, versioned).internal
            self.assertEqual(again, internal)
        stored = FLUNDERS.from_storage(FLUNDERS.to_storage(internal), 7)
        stored["metadata"].pop("resourceVersion")
        self.assertEqual(stored, internal)

    @given(names, st.lists(names, max_size=4))
    def test_fischer_round_trip(self, name: str, disallowed: list[str]) -> None:
        body = {"metadata": {"name": name}, "disallowedFlunders": disallowed}
        internal = FISCHERS.decode_request("v1alpha1", body).internal
        self.assertEqual(
            FISCHERS.decode_request("v1alpha1", FISCHERS.encode("v1alpha1", internal)).internal,
            internal,
        )
