# -*- test-case-name: tests.test_cache_compact -*-
"""
Tests for L{wardled.cache.compact} and compact L{CachedObject}s: the watch
cache holding objects as their response JSON, with a codec, and what that
costs in memory.
"""

from __future__ import annotations

import gc
import json
import tracemalloc
import uuid
from typing import Any

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from wardled.api.negotiate import encode_json
from wardled.apis.wardle import FISCHERS, FLUNDERS
from wardled.cache.cacher import Cacher, restamped
from wardled.cache.compact import Packer, _LabelSets, flat_labels
from wardled.cache.interfaces import CachedObject, IObjectCodec
from wardled.registry.cachedreads import ResourceCodec
from wardled.registry.install import cache_decoder
from wardled.storage.interfaces import DELETE, PUT, Event, KeyValue
from wardled.storage.memory import MemoryStorage

ROOT = "/registry/wardle.example.com/wardle.example.com/flunders/"

Object = dict[str, Any]


def stored_flunder(index: int, namespace: str = "ns", **extra: Any) -> bytes:
    """
    A Flunder as wardled stores it (v1alpha1, with managedFields), shaped
    like the benchmark's.
    """
    metadata: Object = {
        "name": f"item-{index:06d}",
        "namespace": namespace,
        "uid": str(uuid.UUID(int=index)),
        "creationTimestamp": "2026-05-28T20:26:40Z",
        "labels": {"app.kubernetes.io/name": "watch-fanout", "shard": str(index % 8)},
        "managedFields": [
            {
                "manager": "bench",
                "operation": "Update",
                "apiVersion": "wardle.example.com/v1alpha1",
                "time": "2026-05-28T20:26:40Z",
                "fieldsType": "FieldsV1",
                "fieldsV1": {
                    "f:metadata": {"f:labels": {".": {}, "f:app.kubernetes.io/name": {}, "f:shard": {}}},
                    "f:spec": {".": {}, "f:reference": {}, "f:referenceType": {}},
                },
            }
        ],
    }
    metadata.update(extra)
    body = {
        "kind": "Flunder",
        "apiVersion": "wardle.example.com/v1alpha1",
        "metadata": metadata,
        "spec": {"reference": f"fischer-{index % 16}", "referenceType": "Fischer"},
        "status": {},
    }
    return json.dumps(body, separators=(",", ":")).encode()


def kv(index: int, revision: int, namespace: str = "ns", **extra: Any) -> KeyValue:
    key = f"{ROOT}{namespace}/item-{index:06d}"
    return KeyValue(key, stored_flunder(index, namespace, **extra), revision, revision)


class CachedObjectTests(SynchronousTestCase):
    def test_loose(self) -> None:
        obj: Object = {"metadata": {"name": "a"}}
        loose = CachedObject("/k/ns/a", "ns", "a", {"x": "y"}, 3, obj)
        self.assertIs(loose.obj, obj)
        self.assertEqual((loose.name, dict(loose.labels)), ("a", {"x": "y"}))
        self.assertIsNone(loose.data)
        self.assertIsNone(loose.version)
        self.assertIn("loose", repr(loose))

    def test_identity_equality(self) -> None:
        one = CachedObject("/k/a", "", "a", {}, 1, {})
        other = CachedObject("/k/a", "", "a", {}, 1, {})
        self.assertNotEqual(one, other)
        self.assertEqual(len({one, other, one}), 2)

    def test_flat_labels(self) -> None:
        self.assertEqual(flat_labels({}), ())
        flat = flat_labels({"app": "v1", "b": "2"})
        self.assertEqual(flat, ("app", "v1", "b", "2"))
        key, value = (text[:1] + text[1:] for text in ("app", "v1"))
        self.assertIsNot(key, "app")
        again = flat_labels({key: value})
        self.assertIs(again[0], flat[0])
        self.assertIs(again[1], flat[1])


class PackerTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.codec = ResourceCodec(FLUNDERS)
        self.packer = Packer(self.codec, memo_size=2)
        self.decode = cache_decoder(FLUNDERS)

    def loose(self, index: int, revision: int = 5, **extra: Any) -> CachedObject:
        item = kv(index, revision, **extra)
        return self.decode(item.key, item.value, revision)

    def test_interfaces(self) -> None:
        self.assertTrue(verifyObject(IObjectCodec, self.codec))

    def test_pack(self) -> None:
        """
        A compact object keeps its key, namespace, name, labels and
        revision, and the bytes of the object as a v1alpha1 list item.
        """
        loose = self.loose(7, 9)
        packed = self.packer.pack(loose)
        self.assertEqual(
            (packed.key, packed.namespace, packed.name, packed.revision),
            (loose.key, "ns", "item-000007", 9),
        )
        self.assertEqual(
            dict(packed.labels), {"app.kubernetes.io/name": "watch-fanout", "shard": "7"}
        )
        self.assertEqual(packed.version, "v1alpha1")
        expected = encode_json(FLUNDERS.encode_item("v1alpha1", loose.obj))[:-1]
        self.assertEqual(packed.data, expected)
        self.assertIn("compact v1alpha1", repr(packed))

    def test_namespace_interned(self) -> None:
        loose = [self.loose(1), self.loose(2)]
        self.assertIsNot(loose[0].namespace, loose[1].namespace)
        first, second = (self.packer.pack(cached) for cached in loose)
        self.assertIs(first.namespace, second.namespace)

    def test_label_sets_shared(self) -> None:
        first, second, third = (self.packer.pack(self.loose(index)) for index in (1, 9, 2))
        self.assertIs(first._labels, second._labels)
        self.assertIsNot(first._labels, third._labels)
        self.assertEqual(dict(first.labels), dict(second.labels))

    def test_label_sets_bounded(self) -> None:
        sets = _LabelSets(size=2)
        one = sets.shared({"app": "one"})
        sets.shared({"app": "two"})
        self.assertIs(sets.shared({"app": "one"}), one)
        sets.shared({"app": "three"})
        self.assertIsNot(sets.shared({"app": "one"}), one)
        self.assertEqual(sets.shared({}), ())

    def test_name_kept_when_not_the_key(self) -> None:
        loose = CachedObject(ROOT + "ns/x", "ns", "y", {}, 1, {"metadata": {"name": "y"}})
        self.assertEqual(self.packer.pack(loose).name, "y")

    def test_obj_decodes_equal(self) -> None:
        """
        The decoded object equals the one packed (same keys, same order),
        and repeated reads share one decode.
        """
        loose = self.loose(3)
        packed = self.packer.pack(loose)
        self.assertEqual(self.packer.decodes, 0)
        obj = packed.obj
        self.assertEqual(obj, loose.obj)
        self.assertEqual(json.dumps(obj), json.dumps(loose.obj))
        self.assertIs(packed.obj, obj)
        self.assertEqual(self.packer.decodes, 1)

    def test_remember(self) -> None:
        packed = self.packer.pack(self.loose(3), remember=True)
        self.assertEqual(packed.obj["metadata"]["name"], "item-000003")
        self.assertEqual(self.packer.decodes, 0)

    def test_memo_is_bounded(self) -> None:
        packed = [self.packer.pack(self.loose(index)) for index in range(3)]

        def read(*indexes: int) -> int:
            for index in indexes:
                self.assertEqual(packed[index].revision, 5)
                self.assertIn("metadata", packed[index].obj)
            return self.packer.decodes

        self.assertEqual(read(0, 1, 2), 3)
        self.assertEqual(read(2, 1), 3)
        self.assertEqual(read(0), 4)
        self.packer.forget()
        self.assertEqual(read(0), 5)

    def test_bad_memo_size(self) -> None:
        self.assertRaises(ValueError, Packer, self.codec, 0)

    def test_restamped(self) -> None:
        """
        A deleted object's last state is repacked with the delete's
        revision in its bytes.
        """
        packed = self.packer.pack(self.loose(4, 5))
        stamped = restamped(packed, 8, self.packer)
        self.assertEqual(stamped.revision, 8)
        self.assertEqual(stamped.obj["metadata"]["resourceVersion"], "8")
        assert stamped.data is not None
        self.assertIn(b'"resourceVersion":"8"', stamped.data)
        self.assertEqual(packed.obj["metadata"]["resourceVersion"], "5")


class CodecRoundTripTests(SynchronousTestCase):
    """
    L{ResourceCodec.decode} gives back exactly what storage decodes to, for
    objects as varied as the schemas allow.
    """

    def check(self, stored: bytes, resource: Any = FLUNDERS) -> None:
        codec = ResourceCodec(resource)
        internal = resource.from_storage(stored, 12)
        before = json.dumps(internal)
        data = codec.encode(internal)
        back = codec.decode(data, 12)
        self.assertEqual(back, internal)
        self.assertEqual(json.dumps(back), json.dumps(internal))
        self.assertEqual(resource.from_storage(data, 12), internal)
        # Every other version: converting the bytes gives what encoding the
        # object in that version gives, and leaves the object alone.
        for version in resource.versions:
            self.assertEqual(
                codec.transcode(data, version),
                encode_json(resource.encode_item(version, internal))[:-1],
                version,
            )
        self.assertEqual(json.dumps(internal), before)

    def test_specs(self) -> None:
        for spec in (
            {},
            {"reference": "x"},
            {"reference": "x", "referenceType": "Flunder"},
            {"reference": "x", "referenceType": "Fischer"},
            {"referenceType": "Fischer"},
            {"reference": "y", "referenceType": "Bogus"},
        ):
            body = {"metadata": {"name": "a", "namespace": "ns"}, "spec": spec}
            self.check(json.dumps(body).encode())

    def test_metadata(self) -> None:
        metadata = {
            "name": "a",
            "namespace": "ns",
            "generateName": "a-",
            "uid": "u",
            "generation": 3,
            "creationTimestamp": "2026-05-28T20:26:40Z",
            "deletionTimestamp": "2026-05-28T20:26:41Z",
            "deletionGracePeriodSeconds": 0,
            "labels": {"a": "<b&c>"},
            "annotations": {"x": "\u2028 é \U0001f600 \\ \" \n"},
            "finalizers": ["orphan", "x/y"],
            "ownerReferences": [
                {"apiVersion": "v1", "kind": "Pod", "name": "p", "uid": "q", "controller": True}
            ],
            "unknownField": {"dropped": True},
        }
        self.check(json.dumps({"metadata": metadata, "spec": {}, "extra": 1}).encode())
        self.check(stored_flunder(5))

    def test_fischer(self) -> None:
        body = {"metadata": {"name": "f"}, "disallowedFlunders": ["a", "<b>"]}
        self.check(json.dumps(body).encode(), FISCHERS)
        self.check(json.dumps({"metadata": {"name": "f"}}).encode(), FISCHERS)


class CacherCodecTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.storage = MemoryStorage()
        self.cacher = Cacher(
            ROOT, cache_decoder(FLUNDERS), Clock(), self.storage.current_revision
        )

    def test_use_codec_packs_what_is_held(self) -> None:
        self.cacher.reset([kv(1, 2)], 2)
        before = self.cacher.get(ROOT + "ns/item-000001")
        assert before is not None
        self.assertIsNone(before.data)
        self.cacher.use_codec(ResourceCodec(FLUNDERS))
        after = self.cacher.get(ROOT + "ns/item-000001")
        assert after is not None
        self.assertEqual(after.version, "v1alpha1")
        self.assertEqual(after.obj, before.obj)

    def test_equal_codec_changes_nothing(self) -> None:
        self.cacher.use_codec(ResourceCodec(FLUNDERS))
        packer = self.cacher.packer
        self.cacher.use_codec(ResourceCodec(FLUNDERS))
        self.assertIs(self.cacher.packer, packer)

    def test_events_are_packed(self) -> None:
        self.cacher.use_codec(ResourceCodec(FLUNDERS))
        self.cacher.reset([], 1)
        watcher = self.cacher.watch(ROOT, 1, capacity=10)
        self.cacher.apply(Event(PUT, kv(1, 2)))
        self.cacher.apply(Event(PUT, kv(1, 3), kv(1, 2)))
        gone = KeyValue(ROOT + "ns/item-000001", b"", 0, 4)
        self.cacher.apply(Event(DELETE, gone, kv(1, 3)))
        events = [event for _, event in watcher.take(10)]
        self.assertEqual([e.current.version for e in events], ["v1alpha1"] * 3)
        self.assertEqual(
            [e.current.obj["metadata"]["resourceVersion"] for e in events], ["2", "3", "4"]
        )
        self.assertIs(events[2].previous, events[1].current)
        watcher.stop()

    def test_encode_failure_skips_the_key(self) -> None:
        """
        An object the codec cannot encode is skipped and logged, like one
        that does not decode.
        """

        class Broken(ResourceCodec):
            def encode(self, obj: Object) -> bytes:
                raise ValueError("cannot")

        self.cacher.use_codec(Broken(FLUNDERS))
        self.cacher.reset([kv(1, 2)], 2)
        self.assertEqual(self.cacher.size, 0)
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)


class MemoryTests(SynchronousTestCase):
    """
    What holding benchmark-shaped Flunders costs, against their compact
    JSON as a list carries them (the benchmark's measure).
    """

    count = 2000

    def held(self, fill: Any) -> float:
        cacher = Cacher(ROOT, cache_decoder(FLUNDERS), Clock(), MemoryStorage().current_revision)
        cacher.use_codec(ResourceCodec(FLUNDERS))
        gc.collect()
        tracemalloc.start()
        self.addCleanup(tracemalloc.stop)
        start = tracemalloc.get_traced_memory()[0]
        fill(cacher)
        cacher.packer.forget()  # type: ignore[union-attr]
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - start
        tracemalloc.stop()
        objects, _ = cacher.list(ROOT)
        self.assertEqual(len(objects), self.count)
        json_bytes = sum(
            len(encode_json(FLUNDERS.encode_item("v1alpha1", cached.obj)))
            for cached in objects
        )
        return held / json_bytes

    def test_listed(self) -> None:
        """
        Listed at once: about one and a half times their JSON.
        """
        listed = [kv(index, 2 + index) for index in range(self.count)]
        self.assertLess(self.held(lambda cacher: cacher.reset(listed, 1 + self.count)), 1.6)

    def test_created_through_the_watch(self) -> None:
        """
        Created one by one through the watch, so that the history holds an
        event for each: still less than twice their JSON.
        """
        created = [Event(PUT, kv(index, 2 + index)) for index in range(self.count)]

        def fill(cacher: Cacher) -> None:
            cacher.reset([], 1)
            for event in created:
                cacher.apply(event)

        self.assertLess(self.held(fill), 2.0)
