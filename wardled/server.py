# -*- test-case-name: tests.test_integration -*-
"""
Assemble a running server from a L{WardledConfig}: storage, registry,
routes behind the filters, the TLS listener, all under one
L{MultiService} so twistd starts and stops them in order.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred
from twisted.web.resource import IResource
from twisted.web.server import Site

from wardled.api.app import WardleAPI
from wardled.api.filters import Authenticator, FilteredResource
from wardled.api.health import health_endpoints, storage_check
from wardled.auth.authn import authenticate
from wardled.config import WardledConfig
from wardled.registry.install import build_stores
from wardled.storage.etcd import EtcdStorage
from wardled.storage.interfaces import IStorage
from wardled.tls import tls_endpoint_service

ETCD_HEALTH_TIMEOUT = 2.0


class StorageService(Service):
    """
    Owns the storage backend: closes it when the server stops.
    """

    def __init__(self, storage: Any) -> None:
        self.storage = storage

    def stopService(self) -> Deferred[None] | None:
        super().stopService()
        close = getattr(self.storage, "close", None)
        return close() if close is not None else None


class QuietSite(Site):
    """
    A Site that writes no access log unless asked to: per-request logging
    costs a fifth of the throughput (twisted-stack.md §7).
    """

    def log(self, request: Any) -> None:
        if self.access_log:
            super().log(request)

    access_log = False


def make_root(
    storage: IStorage,
    key_prefix: str,
    reactor: Any,
    authenticator: Authenticator = authenticate,
    disabled_admission: Collection[str] = (),
    shutting_down: Callable[[], bool] = lambda: False,
) -> IResource:
    """
    The resource tree: filters in front of the routes, over C{storage}.

    @param reactor: provides C{seconds} (object timestamps) and C{callLater}
        (health-check timeouts); a L{Clock} in tests.
    """
    stores = build_stores(storage, key_prefix, reactor.seconds, disabled_admission)
    health = health_endpoints(
        storage_check("etcd", storage.check_health, reactor, ETCD_HEALTH_TIMEOUT),
        storage_check("etcd-readiness", storage.check_health, reactor, ETCD_HEALTH_TIMEOUT),
        shutting_down,
    )
    api = WardleAPI(stores, health)
    return FilteredResource(api.app.resource(), authenticator)


def make_site(config: WardledConfig, storage: IStorage, reactor: Any) -> Site:
    """
    The HTTP site for C{config}.
    """
    shutting_down = [False]
    reactor.addSystemEventTrigger(
        "before", "shutdown", lambda: shutting_down.__setitem__(0, True)
    )
    root = make_root(
        storage,
        config.etcd_prefix,
        reactor,
        disabled_admission=config.disable_admission_plugins,
        shutting_down=lambda: shutting_down[0],
    )
    site = QuietSite(root, reactor=reactor)
    site.access_log = config.access_log
    site.displayTracebacks = False
    if not config.http2:
        site.acceptableProtocols = lambda: [b"http/1.1"]  # type: ignore[method-assign]
    return site


def make_service(config: WardledConfig, reactor: Any) -> MultiService:
    """
    The whole server as a service tree.
    """
    top = MultiService()
    storage = EtcdStorage(
        reactor,
        config.etcd_servers,
        ca_file=config.etcd_cafile,
        cert_file=config.etcd_certfile,
        key_file=config.etcd_keyfile,
    )
    StorageService(storage).setServiceParent(top)
    site = make_site(config, storage, reactor)
    tls_endpoint_service(reactor, config, site).setServiceParent(top)
    return top
