"""
The whole API (filters, routes, registry, watch caches) over a storage
driver, running for the length of one test: what in-process tests of the
HTTP layer drive.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from wardled.api.filters import Authenticator
from wardled.limits import RequestLimits
from wardled.server import APIServer, build_api
from wardled.storage.interfaces import IStorage

PREFIX = "/registry/wardle.example.com"


def running_api(
    case: SynchronousTestCase,
    storage: IStorage,
    clock: Clock,
    authenticate: Authenticator,
    limits: RequestLimits | None = None,
    **options: Any,
) -> APIServer:
    """
    Build the API over C{storage} under L{PREFIX} and start its watch
    caches until C{case} ends.
    """
    server = build_api(storage, PREFIX, clock, authenticate, limits=limits, **options)
    assert server.multiplexer is not None
    server.multiplexer.startService()
    case.addCleanup(server.multiplexer.stopService)
    return server
