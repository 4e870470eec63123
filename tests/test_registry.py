"""
The generic store and the wardle strategies, over the in-memory backend.
"""

from __future__ import annotations

import json
from collections.abc import Coroutine
from typing import Any

from twisted.internet.defer import ensureDeferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from wardled import apierrors
from wardled.auth.user import authenticated
from wardled.registry.install import build_registry, build_stores
from wardled.registry.store import DeleteOptions, ListOptions, Store
from wardled.selectors import parse_field_selector, parse_label_selector
from wardled.storage.memory import MemoryStorage

PREFIX = "/registry/wardle.example.com"
ADMIN = authenticated("development", ("system:masters",))


def flunder(name: str = "", **spec: str) -> dict[str, Any]:
    metadata = {"name": name} if name else {}
    return {"metadata": metadata, "spec": dict(spec), "status": {}}


class StoreTestsMixin:
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_780_000_000)
        self.storage = MemoryStorage()
        self.stores = build_stores(self.storage, PREFIX, self.clock.seconds)
        self.flunders: Store = self.stores["flunders"]
        self.fischers: Store = self.stores["fischers"]

    def resolve(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        return self.successResultOf(ensureDeferred(coroutine))  # type: ignore[attr-defined]

    def fail_with(self, coroutine: Coroutine[Any, Any, Any]) -> apierrors.StatusError:
        failure = self.failureResultOf(ensureDeferred(coroutine), apierrors.StatusError)  # type: ignore[attr-defined]
        return failure.value

    def create(self, name: str, namespace: str = "default", **spec: str) -> dict[str, Any]:
        return self.resolve(self.flunders.create(namespace, flunder(name, **spec), ADMIN))


class CreateTests(StoreTestsMixin, SynchronousTestCase):
    def test_create_stores_v1alpha1_json_at_reference_key(self) -> None:
        created = self.create("one", flunderReference="two", referenceType="Flunder")
        key = f"{PREFIX}/wardle.example.com/flunders/default/one"
        kv, _ = self.successResultOf(self.storage.get(key))
        assert kv is not None
        stored = json.loads(kv.value)
        self.assertEqual(stored["apiVersion"], "wardle.example.com/v1alpha1")
        self.assertEqual(stored["kind"], "Flunder")
        self.assertEqual(stored["spec"], {"reference": "two", "referenceType": "Flunder"})
        self.assertNotIn("resourceVersion", stored["metadata"])
        self.assertEqual(created["metadata"]["resourceVersion"], str(kv.mod_revision))
        self.assertEqual(created["metadata"]["namespace"], "default")
        self.assertEqual(created["metadata"]["creationTimestamp"], "2026-05-28T20:26:40Z")
        self.assertEqual(len(created["metadata"]["uid"]), 36)

    def test_client_system_fields_are_wiped(self) -> None:
        obj = flunder("wiped")
        obj["metadata"].update(
            uid="mine", creationTimestamp="2000-01-01T00:00:00Z",
            deletionTimestamp="2000-01-01T00:00:00Z", deletionGracePeriodSeconds=5,
        )
        created = self.resolve(self.flunders.create("default", obj, ADMIN))
        self.assertNotEqual(created["metadata"]["uid"], "mine")
        self.assertNotIn("deletionTimestamp", created["metadata"])
        self.assertNotIn("deletionGracePeriodSeconds", created["metadata"])

    def test_duplicate_is_409_already_exists(self) -> None:
        self.create("dup")
        error = self.fail_with(self.flunders.create("default", flunder("dup"), ADMIN))
        self.assertEqual((error.code, error.reason), (409, "AlreadyExists"))
        self.assertEqual(error.message, 'flunders.wardle.example.com "dup" already exists')

    def test_resource_version_on_create_is_500(self) -> None:
        obj = flunder("rv")
        obj["metadata"]["resourceVersion"] = "5"
        error = self.fail_with(self.flunders.create("default", obj, ADMIN))
        self.assertEqual(error.code, 500)
        self.assertIn("resourceVersion should not be set on objects to be created", error.message)

    def test_generate_name(self) -> None:
        obj = {"metadata": {"generateName": "gen-"}, "spec": {}}
        created = self.resolve(self.flunders.create("default", obj, ADMIN))
        name = created["metadata"]["name"]
        self.assertTrue(name.startswith("gen-"))
        self.assertEqual(len(name), len("gen-") + 5)
        self.assertTrue(set(name[4:]) <= set("bcdfghjklmnpqrstvwxz2456789"))

    def test_generate_name_retries_then_conflicts(self) -> None:
        store = Store(
            self.flunders.strategy, self.storage, PREFIX, self.clock.seconds,
            name_suffix=lambda: "aaaaa",
        )
        obj = {"metadata": {"generateName": "same-"}, "spec": {}}
        self.resolve(store.create("default", obj, ADMIN))
        error = self.fail_with(store.create("default", obj, ADMIN))
        self.assertEqual(error.code, 409)
        self.assertIn("not able to generate a unique name", error.message)
        self.assertEqual((error.details or {})["retryAfterSeconds"], 1)

    def test_namespace_mismatch_is_400(self) -> None:
        obj = flunder("ns")
        obj["metadata"]["namespace"] = "other"
        error = self.fail_with(self.flunders.create("default", obj, ADMIN))
        self.assertEqual(error.code, 400)
        self.assertEqual(
            error.message,
            "the namespace of the provided object does not match the namespace sent on the request",
        )

    def test_fischer_namespace_cleared(self) -> None:
        obj = {"metadata": {"name": "f", "namespace": "default"}, "disallowedFlunders": ["x"]}
        created = self.resolve(self.fischers.create("", obj, ADMIN))
        self.assertNotIn("namespace", created["metadata"])
        key = f"{PREFIX}/wardle.example.com/fischers/f"
        kv, _ = self.successResultOf(self.storage.get(key))
        self.assertIsNotNone(kv)

    def test_spec_validation_422_with_causes(self) -> None:
        obj = flunder("bad", flunderReference="a", fischerReference="b", referenceType="Flunder")
        error = self.fail_with(self.flunders.create("default", obj, ADMIN))
        self.assertEqual(error.code, 422)
        self.assertEqual(
            error.message,
            'Flunder.wardle.example.com "bad" is invalid: spec.fischerReference: '
            'Invalid value: "b": cannot be set with flunderReference at the same time',
        )
        self.assertEqual(
            (error.details or {})["causes"],
            [{"reason": "FieldValueInvalid",
              "message": 'Invalid value: "b": cannot be set with flunderReference at the same time',
              "field": "spec.fischerReference"}],
        )
        self.assertEqual((error.details or {})["kind"], "Flunder")
        self.assertEqual((error.details or {})["group"], "wardle.example.com")

    def test_spec_errors_mask_metadata_errors(self) -> None:
        obj = flunder("bad/name", referenceType="Other")
        error = self.fail_with(self.flunders.create("default", obj, ADMIN))
        self.assertEqual([c["field"] for c in (error.details or {})["causes"]], ["spec.referenceType"])

    def test_metadata_validation(self) -> None:
        error = self.fail_with(self.flunders.create("default", flunder(""), ADMIN))
        self.assertEqual(
            error.message,
            'Flunder.wardle.example.com "" is invalid: metadata.name: Required value: '
            "name or generateName is required",
        )

    def test_dry_run_writes_nothing(self) -> None:
        created = self.resolve(self.flunders.create("default", flunder("dry"), ADMIN, dry_run=True))
        self.assertTrue(created["metadata"]["uid"])
        self.assertNotIn("resourceVersion", created["metadata"])
        page = self.resolve(self.flunders.list("default", ListOptions()))
        self.assertEqual(page.items, [])


class BanFlunderTests(StoreTestsMixin, SynchronousTestCase):
    def test_banned_name_is_forbidden(self) -> None:
        self.resolve(self.fischers.create(
            "", {"metadata": {"name": "panda"}, "disallowedFlunders": ["badname"]}, ADMIN
        ))
        error = self.fail_with(self.flunders.create("kube-system", flunder("badname"), ADMIN))
        self.assertEqual(error.code, 403)
        self.assertEqual(
            error.status(),
            {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
             "message": 'flunders.wardle.example.com "badname" is forbidden: this name may '
                        "not be used, please change the resource name",
             "reason": "Forbidden",
             "details": {"name": "badname", "group": "wardle.example.com", "kind": "flunders"},
             "code": 403},
        )
        self.create("goodname")
        self.create("BadName")

    def test_disabled(self) -> None:
        stores = build_stores(self.storage, PREFIX, self.clock.seconds, {"BanFlunder"})
        self.resolve(stores["fischers"].create(
            "", {"metadata": {"name": "panda"}, "disallowedFlunders": ["badname"]}, ADMIN
        ))
        created = self.resolve(stores["flunders"].create("default", flunder("badname"), ADMIN))
        self.assertEqual(created["metadata"]["name"], "badname")

    def test_generate_name_is_not_banned(self) -> None:
        self.resolve(self.fischers.create(
            "", {"metadata": {"name": "p"}, "disallowedFlunders": [""]}, ADMIN
        ))
        # A ban on the empty name catches generateName-only creates, as in the
        # reference (admission runs before name generation).
        error = self.fail_with(self.flunders.create(
            "default", {"metadata": {"generateName": "x-"}}, ADMIN
        ))
        self.assertEqual(error.code, 403)


class UpdateTests(StoreTestsMixin, SynchronousTestCase):
    def test_update_requires_resource_version(self) -> None:
        created = self.create("u")
        del created["metadata"]["resourceVersion"]
        error = self.fail_with(self.flunders.update("default", "u", created, ADMIN))
        self.assertEqual(error.code, 422)
        self.assertEqual(
            error.message,
            'flunders.wardle.example.com "u" is invalid: metadata.resourceVersion: '
            "Invalid value: 0x0: must be specified for an update",
        )
        self.assertEqual((error.details or {})["kind"], "flunders")

    def test_stale_resource_version_is_409(self) -> None:
        created = self.create("u")
        fresh = dict(created, metadata=dict(created["metadata"], labels={"a": "b"}))
        self.resolve(self.flunders.update("default", "u", fresh, ADMIN))
        error = self.fail_with(self.flunders.update("default", "u", created, ADMIN))
        self.assertEqual((error.code, error.reason), (409, "Conflict"))
        self.assertEqual(
            error.message,
            'Operation cannot be fulfilled on flunders.wardle.example.com "u": the object '
            "has been modified; please apply your changes to the latest version and try again",
        )

    def test_missing_is_404(self) -> None:
        obj = flunder("ghost")
        obj["metadata"]["resourceVersion"] = "1"
        error = self.fail_with(self.flunders.update("default", "ghost", obj, ADMIN))
        self.assertEqual(error.code, 404)
        self.assertEqual(error.message, 'flunders.wardle.example.com "ghost" not found')

    def test_update_carries_over_system_fields_and_skips_spec_validation(self) -> None:
        created = self.create("u", flunderReference="x", referenceType="Flunder")
        # Invalid on create ("cannot be empty if referenceType is Fischer"),
        # but the reference does not validate the spec on update.
        changed = flunder("u", referenceType="Fischer")
        changed["metadata"]["resourceVersion"] = created["metadata"]["resourceVersion"]
        updated = self.resolve(self.flunders.update("default", "u", changed, ADMIN))
        self.assertEqual(updated["metadata"]["uid"], created["metadata"]["uid"])
        self.assertEqual(
            updated["metadata"]["creationTimestamp"], created["metadata"]["creationTimestamp"]
        )
        self.assertGreater(
            int(updated["metadata"]["resourceVersion"]), int(created["metadata"]["resourceVersion"])
        )

    def test_immutable_uid(self) -> None:
        created = self.create("u")
        created["metadata"]["uid"] = "another"
        error = self.fail_with(self.flunders.update("default", "u", created, ADMIN))
        self.assertEqual(error.code, 422)
        self.assertIn("metadata.uid", error.message)

    def test_noop_update_keeps_resource_version(self) -> None:
        created = self.create("same")
        updated = self.resolve(self.flunders.update("default", "same", created, ADMIN))
        self.assertEqual(updated["metadata"]["resourceVersion"], created["metadata"]["resourceVersion"])


class DeleteTests(StoreTestsMixin, SynchronousTestCase):
    def test_delete_removes(self) -> None:
        created = self.create("d")
        result = self.resolve(self.flunders.delete("default", "d", DeleteOptions(), ADMIN))
        self.assertTrue(result.deleted)
        self.assertEqual(result.obj["metadata"]["uid"], created["metadata"]["uid"])
        error = self.fail_with(self.flunders.get("default", "d"))
        self.assertEqual(error.code, 404)

    def test_finalizers_keep_object_until_last_removed(self) -> None:
        obj = flunder("f")
        obj["metadata"]["finalizers"] = ["example.com/keep"]
        self.resolve(self.flunders.create("default", obj, ADMIN))
        result = self.resolve(self.flunders.delete("default", "f", DeleteOptions(), ADMIN))
        self.assertFalse(result.deleted)
        marked = result.obj
        self.assertEqual(marked["metadata"]["deletionTimestamp"], "2026-05-28T20:26:40Z")
        self.assertEqual(marked["metadata"]["deletionGracePeriodSeconds"], 0)
        again = self.resolve(self.flunders.delete("default", "f", DeleteOptions(), ADMIN))
        self.assertFalse(again.deleted)
        adding = dict(marked, metadata=dict(marked["metadata"], finalizers=["example.com/keep", "b.com/x"]))
        error = self.fail_with(self.flunders.update("default", "f", adding, ADMIN))
        self.assertEqual(error.code, 422)
        current = self.resolve(self.flunders.get("default", "f"))
        current["metadata"]["finalizers"] = []
        self.resolve(self.flunders.update("default", "f", current, ADMIN))
        error = self.fail_with(self.flunders.get("default", "f"))
        self.assertEqual(error.code, 404)

    def test_propagation_policy_adds_gc_finalizers(self) -> None:
        self.create("o")
        result = self.resolve(self.flunders.delete("default", "o", DeleteOptions(propagation_policy="Orphan"), ADMIN))
        self.assertEqual(result.obj["metadata"]["finalizers"], ["orphan"])
        self.create("fg")
        result = self.resolve(self.flunders.delete("default", "fg", DeleteOptions(propagation_policy="Foreground"), ADMIN))
        self.assertEqual(result.obj["metadata"]["finalizers"], ["foregroundDeletion"])
        self.create("bg")
        result = self.resolve(self.flunders.delete("default", "bg", DeleteOptions(propagation_policy="Background"), ADMIN))
        self.assertTrue(result.deleted)

    def test_uid_precondition(self) -> None:
        self.create("p")
        error = self.fail_with(self.flunders.delete("default", "p", DeleteOptions(precondition_uid="nope"), ADMIN))
        self.assertEqual(error.code, 409)
        self.assertIn("the UID in the precondition (nope) does not match", error.message)

    def test_dry_run_delete(self) -> None:
        self.create("keep")
        result = self.resolve(self.flunders.delete("default", "keep", DeleteOptions(dry_run=True), ADMIN))
        self.assertTrue(result.deleted)
        self.resolve(self.flunders.get("default", "keep"))

    def test_delete_collection_returns_deleted(self) -> None:
        for name in ("a", "b", "c"):
            obj = flunder(name)
            obj["metadata"]["labels"] = {"gone": "yes" if name != "c" else "no"}
            self.resolve(self.flunders.create("default", obj, ADMIN))
        page = self.resolve(self.flunders.delete_collection(
            "default", ListOptions(label_selector=parse_label_selector("gone=yes")), DeleteOptions(), ADMIN
        ))
        self.assertEqual([i["metadata"]["name"] for i in page.items], ["a", "b"])
        left = self.resolve(self.flunders.list("default", ListOptions()))
        self.assertEqual([i["metadata"]["name"] for i in left.items], ["c"])


class ListTests(StoreTestsMixin, SynchronousTestCase):
    def setUp(self) -> None:
        super().setUp()
        for namespace in ("default", "other"):
            for index in range(5):
                obj = flunder(f"f{index}")
                obj["metadata"]["labels"] = {"parity": "even" if index % 2 == 0 else "odd"}
                self.resolve(self.flunders.create(namespace, obj, ADMIN))

    def names(self, page: Any) -> list[str]:
        return [f'{i["metadata"]["namespace"]}/{i["metadata"]["name"]}' for i in page.items]

    def test_namespace_and_cross_namespace(self) -> None:
        self.assertEqual(len(self.resolve(self.flunders.list("default", ListOptions())).items), 5)
        everything = self.resolve(self.flunders.list("", ListOptions()))
        self.assertEqual(len(everything.items), 10)
        self.assertEqual(everything.resource_version, self.successResultOf(self.storage.current_revision()))

    def test_selectors(self) -> None:
        page = self.resolve(self.flunders.list("", ListOptions(label_selector=parse_label_selector("parity=odd"))))
        self.assertEqual(self.names(page), ["default/f1", "default/f3", "other/f1", "other/f3"])
        page = self.resolve(self.flunders.list("", ListOptions(field_selector=parse_field_selector("metadata.namespace=other,metadata.name!=f0"))))
        self.assertEqual(self.names(page), ["other/f1", "other/f2", "other/f3", "other/f4"])

    def test_pagination(self) -> None:
        first = self.resolve(self.flunders.list("", ListOptions(limit=4)))
        self.assertEqual(self.names(first), ["default/f0", "default/f1", "default/f2", "default/f3"])
        self.assertEqual(first.remaining_item_count, 6)
        self.create("late")
        second = self.resolve(self.flunders.list("", ListOptions(limit=4, continue_token=first.continue_token)))
        self.assertEqual(self.names(second), ["default/f4", "other/f0", "other/f1", "other/f2"])
        self.assertEqual(second.resource_version, first.resource_version)
        third = self.resolve(self.flunders.list("", ListOptions(limit=4, continue_token=second.continue_token)))
        self.assertEqual(self.names(third), ["other/f3", "other/f4"])
        self.assertEqual(third.continue_token, "")
        self.assertIsNone(third.remaining_item_count)

    def test_pagination_with_selector(self) -> None:
        options = ListOptions(limit=2, label_selector=parse_label_selector("parity=even"))
        first = self.resolve(self.flunders.list("", options))
        self.assertEqual(self.names(first), ["default/f0", "default/f2"])
        self.assertIsNone(first.remaining_item_count)
        second = self.resolve(self.flunders.list("", ListOptions(limit=2, label_selector=options.label_selector, continue_token=first.continue_token)))
        self.assertEqual(self.names(second), ["default/f4", "other/f0"])

    def test_compacted_continue_is_410_with_fresh_token(self) -> None:
        first = self.resolve(self.flunders.list("", ListOptions(limit=2)))
        self.create("newer")
        revision = self.successResultOf(self.storage.current_revision())
        self.successResultOf(self.storage.compact(revision))
        error = self.fail_with(self.flunders.list("", ListOptions(limit=2, continue_token=first.continue_token)))
        self.assertEqual((error.code, error.reason), (410, "Expired"))
        self.assertIn("continue", error.status()["metadata"])

    def test_exact_resource_version(self) -> None:
        before = self.resolve(self.flunders.list("default", ListOptions()))
        self.create("extra")
        old = self.resolve(self.flunders.list("default", ListOptions(resource_version=str(before.resource_version), resource_version_match="Exact")))
        self.assertEqual(len(old.items), 5)
        self.assertEqual(old.resource_version, before.resource_version)

    def test_too_large_resource_version(self) -> None:
        error = self.fail_with(self.flunders.list("default", ListOptions(resource_version="999999")))
        self.assertEqual(error.code, 504)
        self.assertTrue(error.message.startswith("Timeout: Too large resource version: 999999, current: "))

    def test_bad_continue_token(self) -> None:
        error = self.fail_with(self.flunders.list("", ListOptions(continue_token="!!!")))
        self.assertEqual(error.code, 400)
        self.assertTrue(error.message.startswith("invalid continue token: continue key is not valid"))


class CachedRegistryTests(SynchronousTestCase):
    """
    The stores with their watch caches (one multiplexer over the group).
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.storage = MemoryStorage()
        self.registry = build_registry(self.storage, PREFIX, self.clock)
        self.flunders = self.registry.stores["flunders"]
        self.fischers = self.registry.stores["fischers"]

    def test_ban_flunder_not_ready_after_10_seconds(self) -> None:
        deferred = ensureDeferred(self.flunders.create("default", flunder("early"), ADMIN))
        self.assertNoResult(deferred)
        self.clock.advance(10)
        error = self.failureResultOf(deferred, apierrors.StatusError).value
        self.assertEqual(error.code, 403)
        self.assertEqual(
            error.message,
            'flunders.wardle.example.com "early" is forbidden: not yet ready to handle request',
        )

    def test_reads_served_from_cache_after_sync(self) -> None:
        assert self.registry.multiplexer is not None
        self.registry.multiplexer.startService()
        self.successResultOf(ensureDeferred(self.fischers.create(
            "", {"metadata": {"name": "ban"}, "disallowedFlunders": ["nope"]}, ADMIN
        )))
        error = self.failureResultOf(
            ensureDeferred(self.flunders.create("default", flunder("nope"), ADMIN)),
            apierrors.StatusError,
        ).value
        self.assertEqual(error.code, 403)
        created = self.successResultOf(
            ensureDeferred(self.flunders.create("default", flunder("yes"), ADMIN))
        )
        cacher = self.flunders.cacher
        assert cacher is not None
        got = self.successResultOf(ensureDeferred(self.flunders.get("default", "yes")))
        cached = cacher.get(self.flunders.key("default", "yes"))
        assert cached is not None
        self.assertIs(got, cached.obj)
        self.assertEqual(got["metadata"]["uid"], created["metadata"]["uid"])
        page = self.successResultOf(
            ensureDeferred(self.flunders.list("default", ListOptions(resource_version="0")))
        )
        self.assertEqual([i["metadata"]["name"] for i in page.items], ["yes"])
