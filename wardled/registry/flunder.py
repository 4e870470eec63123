# -*- test-case-name: tests.test_registry -*-
"""
Flunder's policy (the reference's pkg/registry/wardle/flunder/strategy.go):
namespaced, spec validated on create only, no status subresource.
"""

from wardled.apis.wardle import FLUNDERS, validate_flunder
from wardled.registry.strategy import Strategy

STRATEGY = Strategy(FLUNDERS, validate=validate_flunder)
