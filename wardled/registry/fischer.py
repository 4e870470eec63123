# -*- test-case-name: tests.test_registry -*-
"""
Fischer's policy (the reference's pkg/registry/wardle/fischer/strategy.go):
cluster-scoped, nothing validated beyond metadata.
"""

from wardled.apis.wardle import FISCHERS
from wardled.registry.strategy import Strategy

STRATEGY = Strategy(FISCHERS)
