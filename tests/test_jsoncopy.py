# -*- test-case-name: tests.test_jsoncopy -*-
"""
L{wardled.apis.jsoncopy}.
"""

from __future__ import annotations

import copy
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from wardled.apis.jsoncopy import deep_copy


class DeepCopyTests(SynchronousTestCase):
    def test_equal_and_independent(self) -> None:
        """
        The copy equals the original and no container is shared: changing
        any level of the copy leaves the original as it was.
        """
        original: dict[str, Any] = {
            "metadata": {"name": "a", "labels": {"x": "1"}, "finalizers": ["f"]},
            "spec": {"items": [{"n": 1, "ok": True, "none": None, "f": 1.5}]},
        }
        before = copy.deepcopy(original)
        copied = deep_copy(original)
        self.assertEqual(copied, original)
        copied["metadata"]["labels"]["x"] = "2"
        copied["metadata"]["finalizers"].append("g")
        copied["spec"]["items"][0]["n"] = 2
        copied["spec"]["items"].append({})
        self.assertEqual(original, before)

    def test_scalars_are_themselves(self) -> None:
        for value in ("text", 3, 2.5, True, None):
            self.assertIs(deep_copy(value), value)
