# -*- test-case-name: tests.test_integration -*-
"""
Assemble a running server from a L{WardledConfig}: storage, registry,
routes behind the filters, the TLS listener, all under one
L{MultiService} so twistd starts and stops them in order.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Any

import attrs
from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred
from twisted.web.resource import IResource
from twisted.web.server import Site

from wardled.api.app import WardleAPI
from wardled.api.filters import Authenticator, FilteredResource
from wardled.api.health import HealthCheck, health_endpoints, storage_check
from wardled.auth.authn import authenticate, make_authenticator
from wardled.auth.policy import IPolicy, PolicyFile
from wardled.auth.tokenfile import load_token_file
from wardled.cache.multiplexer import WatchMultiplexer
from wardled.config import WardledConfig
from wardled.registry.install import build_registry
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


@attrs.frozen
class APIServer:
    """
    The resource tree and the watch multiplexer feeding its caches (a
    service: it must run for the caches to fill).
    """

    resource: IResource
    multiplexer: WatchMultiplexer | None


def build_api(
    storage: IStorage,
    key_prefix: str,
    reactor: Any,
    authenticator: Authenticator = authenticate,
    disabled_admission: Collection[str] = (),
    shutting_down: Callable[[], bool] = lambda: False,
    history_sizes: Mapping[str, int] | None = None,
    policy: IPolicy | None = None,
) -> APIServer:
    """
    Filters in front of the routes, over C{storage} and its watch caches.

    @param reactor: provides C{seconds} (object timestamps) and C{callLater}
        (timeouts); a L{Clock} in tests.
    @param policy: the stand-alone authorization policy, if any.
    """
    registry = build_registry(
        storage, key_prefix, reactor, disabled_admission, history_sizes
    )
    cachers = [store.cacher for store in registry.stores.values() if store.cacher]

    async def caches_ready() -> None:
        if not all(cacher.ready for cacher in cachers):
            raise RuntimeError("watch cache not synced")

    health = health_endpoints(
        storage_check("etcd", storage.check_health, reactor, ETCD_HEALTH_TIMEOUT),
        storage_check("etcd-readiness", storage.check_health, reactor, ETCD_HEALTH_TIMEOUT),
        shutting_down,
        extra_readiness=(HealthCheck("watch-cache", caches_ready),),
    )
    api = WardleAPI(registry.stores, health)
    return APIServer(
        FilteredResource(api.app.resource(), authenticator, policy), registry.multiplexer
    )


def make_root(
    storage: IStorage,
    key_prefix: str,
    reactor: Any,
    authenticator: Authenticator = authenticate,
    disabled_admission: Collection[str] = (),
    policy: IPolicy | None = None,
) -> IResource:
    """
    The resource tree with its caches started now (for in-memory tests).
    """
    server = build_api(
        storage, key_prefix, reactor, authenticator, disabled_admission, policy=policy
    )
    if server.multiplexer is not None:
        server.multiplexer.startService()
    return server.resource


def make_site(
    config: WardledConfig,
    storage: IStorage,
    reactor: Any,
    policy: IPolicy | None = None,
) -> tuple[Site, WatchMultiplexer | None]:
    """
    The HTTP site for C{config}.

    @param policy: the stand-alone authorization policy, if any.
    @raise wardled.auth.tokenfile.TokenFileError: C{--token-auth-file}
        cannot be loaded.
    """
    tokens = None
    if config.token_auth_file:
        tokens = load_token_file(config.token_auth_file)
    shutting_down = [False]
    reactor.addSystemEventTrigger(
        "before", "shutdown", lambda: shutting_down.__setitem__(0, True)
    )
    server = build_api(
        storage,
        config.etcd_prefix,
        reactor,
        disabled_admission=config.disable_admission_plugins,
        shutting_down=lambda: shutting_down[0],
        history_sizes=dict(config.watch_cache_sizes),
        authenticator=make_authenticator(tokens),
        policy=policy,
    )
    site = QuietSite(server.resource, reactor=reactor)
    site.access_log = config.access_log
    site.displayTracebacks = False
    return site, server.multiplexer


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
    policy = None
    if config.authorization_policy_file:
        policy = PolicyFile.load(config.authorization_policy_file)
        policy.service(reactor).setServiceParent(top)
    site, multiplexer = make_site(config, storage, reactor, policy)
    if multiplexer is not None:
        multiplexer.setServiceParent(top)
    tls_endpoint_service(reactor, config, site).setServiceParent(top)
    return top
