# -*- test-case-name: tests.test_integration -*-
"""
Assemble a running server from a L{WardledConfig}: storage, registry,
routes behind the filters, authentication and authorization (delegated to
the cluster when there is one), the TLS listener, all under one
L{MultiService} so twistd starts and stops them in order.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

import attrs
from twisted.application.service import IService, MultiService, Service
from twisted.internet.defer import Deferred
from twisted.web.resource import IResource
from twisted.web.server import Site

from wardled.admission import NAMESPACE_LIFECYCLE, IAdmissionPlugin
from wardled.api.app import WardleAPI
from wardled.api.dispatch import Routes
from wardled.api.filters import Authenticator, FilteredResource, IRequestObserver
from wardled.api.health import (
    HealthCheck,
    HealthEndpoint,
    health_endpoints,
    storage_check,
)
from wardled.audit.log import audit_backend
from wardled.auth.authn import make_authenticator
from wardled.auth.authz import Authorizer
from wardled.auth.clientauth import ClientAuth
from wardled.auth.configmap import ConfigMapRefresher, flags_given, settings_from_flags
from wardled.auth.interfaces import ITokenChecker
from wardled.auth.policy import IPolicy, PolicyFile
from wardled.auth.sar import SubjectAccessReviewer
from wardled.auth.tokenfile import load_token_file
from wardled.auth.tokenreview import TokenReviewer
from wardled.cache.multiplexer import WatchMultiplexer
from wardled.config import WardledConfig
from wardled.connlimits import IDLE_TIMEOUT, GuardedSite
from wardled.gctuning import CollectorTuning
from wardled.kube.client import KubeClient
from wardled.kube.clusters import Clusters
from wardled.kube.reflector import Reflector
from wardled.limits import RequestLimits, settings_from_config
from wardled.metrics import ServerMetrics
from wardled.namespacelifecycle import NAMESPACES_PATH, NamespaceLifecycle
from wardled.registry.install import build_registry, group_prefix
from wardled.reload import ClientCAFiles, IReloadable, ReloadService, ServingCertificate
from wardled.sdnotify import SystemdNotifier, endpoint_ready
from wardled.shutdown import serve_gracefully
from wardled.storage.etcd import EtcdStorage
from wardled.storage.interfaces import IStorage
from wardled.storage.sqlite import CompactionService, SqliteStorage
from wardled.tls import tls_endpoint_service

ETCD_HEALTH_TIMEOUT = 2.0


class ClosingService(Service):
    """
    Closes something (the storage backend, a cluster client) when the
    server stops.
    """

    def __init__(self, closeable: Any) -> None:
        self.closeable = closeable

    def stopService(self) -> Deferred[None] | None:
        super().stopService()
        close = getattr(self.closeable, "close", None)
        return close() if close is not None else None


class QuietSite(GuardedSite):
    """
    A Site that writes no access log unless asked to: per-request logging
    costs a fifth of the throughput (twisted-stack.md §7).  Its connections
    are guarded (L{wardled.connlimits}).
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

    @ivar readiness: the C{/readyz} checks (the systemd notifier waits
        for them).
    """

    resource: IResource
    multiplexer: WatchMultiplexer | None
    readiness: HealthEndpoint


def build_api(
    storage: IStorage,
    key_prefix: str,
    reactor: Any,
    authenticator: Authenticator | None = None,
    disabled_admission: Collection[str] = (),
    shutting_down: Callable[[], bool] = lambda: False,
    history_sizes: Mapping[str, int] | None = None,
    authorizer: Authorizer | None = None,
    first_admission: Sequence[IAdmissionPlugin] = (),
    metrics: ServerMetrics | None = None,
    observers: Sequence[IRequestObserver] = (),
    limits: RequestLimits | None = None,
) -> APIServer:
    """
    Filters in front of the routes, over C{storage} and its watch caches.

    @param reactor: provides C{seconds} (object timestamps) and C{callLater}
        (timeouts); a L{Clock} in tests.
    @param authenticator: who sent a request; by default nobody is
        authenticated (everyone is anonymous).
    @param authorizer: the authorization chain; by default the stand-alone
        rules without a policy.
    @param first_admission: admission plugins that run before BanFlunder.
    @param metrics: where C{/metrics} series are kept; by default a new set.
    @param observers: told of every request besides the metrics (the
        audit log).
    @param limits: max in flight and the request timeout; none: unlimited.
    """
    metrics = metrics or ServerMetrics()
    storage = metrics.timed(storage, group_prefix(key_prefix))
    registry = build_registry(
        storage, key_prefix, reactor, disabled_admission, history_sizes, first_admission
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
    metrics.watch_caches(
        {plural: store.cacher for plural, store in registry.stores.items() if store.cacher}
    )
    api = WardleAPI(registry.stores, health, metrics.exposition)
    filtered = FilteredResource(
        Routes(api),
        authenticator or make_authenticator(),
        authorizer,
        (metrics.requests, *observers),
        limits,
    )
    return APIServer(filtered, registry.multiplexer, health["readyz"])


def make_root(
    storage: IStorage,
    key_prefix: str,
    reactor: Any,
    authenticator: Authenticator | None = None,
    disabled_admission: Collection[str] = (),
    authorizer: Authorizer | None = None,
) -> IResource:
    """
    The resource tree with its caches started now (for in-memory tests).
    """
    server = build_api(
        storage,
        key_prefix,
        reactor,
        authenticator,
        disabled_admission,
        authorizer=authorizer,
    )
    if server.multiplexer is not None:
        server.multiplexer.startService()
    return server.resource


@attrs.frozen
class Access:
    """
    Who may do what: the authenticator, the authorizer and the admission
    plugins that need the cluster, plus the services that keep them
    current (ConfigMap refresher, namespace mirror, closing cluster
    clients).
    """

    client_auth: ClientAuth
    authenticator: Authenticator
    authorizer: Authorizer
    first_admission: tuple[IAdmissionPlugin, ...]
    services: tuple[IService, ...]


def build_access(
    config: WardledConfig,
    reactor: Any,
    clusters: Clusters,
    configmap: Mapping[str, str] | None,
    policy: IPolicy | None,
) -> Access:
    """
    The authentication and authorization chains for C{config}, delegating
    to C{clusters} where they are known.

    @param configmap: the C{extension-apiserver-authentication} data read at
        start-up (C{None}: none, or not looked up).
    @raise wardled.tls.TLSConfigError: a CA file cannot be used.
    @raise wardled.auth.clientauth.ClientAuthError: the ConfigMap holds
        something unusable.
    @raise wardled.auth.tokenfile.TokenFileError: C{--token-auth-file}
        cannot be loaded.
    """
    client_auth = ClientAuth(settings_from_flags(config), flags_given(config), configmap)
    services: list[IService] = []
    checkers: list[ITokenChecker] = []
    if config.token_auth_file:
        checkers.append(load_token_file(config.token_auth_file))
    if clusters.authentication is not None:
        client = KubeClient(reactor, clusters.authentication)
        services.append(ClosingService(client))
        checkers.append(
            TokenReviewer(client, reactor, config.authentication_token_webhook_cache_ttl)
        )
        if not config.authentication_skip_lookup:
            services.append(ConfigMapRefresher(client, reactor, client_auth))
    reviewer = None
    if clusters.authorization is not None:
        client = KubeClient(reactor, clusters.authorization)
        services.append(ClosingService(client))
        reviewer = SubjectAccessReviewer(
            client,
            reactor,
            config.authorization_webhook_cache_authorized_ttl,
            config.authorization_webhook_cache_unauthorized_ttl,
        )
    first_admission: list[IAdmissionPlugin] = []
    if clusters.core is not None and NAMESPACE_LIFECYCLE not in config.disable_admission_plugins:
        client = KubeClient(reactor, clusters.core)
        namespaces = Reflector(reactor, client, NAMESPACES_PATH)
        services.extend((namespaces, ClosingService(client)))
        first_admission.append(NamespaceLifecycle(namespaces, client, reactor))
    return Access(
        client_auth,
        make_authenticator(client_auth, checkers),
        Authorizer(policy, reviewer, config.authorization_always_allow_paths),
        tuple(first_admission),
        tuple(services),
    )


def make_site(
    config: WardledConfig,
    storage: IStorage,
    reactor: Any,
    access: Access,
    audit: IRequestObserver | None = None,
) -> tuple[Site, APIServer]:
    """
    The HTTP site for C{config}, and the API it serves.

    @param audit: the audit log's observer, if auditing.
    """
    shutting_down = [False]
    reactor.addSystemEventTrigger(
        "before", "shutdown", lambda: shutting_down.__setitem__(0, True)
    )
    server = build_api(
        storage,
        config.etcd_prefix,
        reactor,
        authenticator=access.authenticator,
        disabled_admission=config.disable_admission_plugins,
        shutting_down=lambda: shutting_down[0],
        history_sizes=dict(config.watch_cache_sizes),
        authorizer=access.authorizer,
        first_admission=access.first_admission,
        observers=() if audit is None else (audit,),
        limits=RequestLimits(reactor, settings_from_config(config)),
    )
    # No form parsing: Twisted would answer a bad multipart body with a bare
    # 400 and drop the connection on an odd Content-Type (Go answers 415).
    site = QuietSite(
        server.resource, reactor=reactor, timeout=IDLE_TIMEOUT, parsePOSTFormSubmission=False
    )
    site.limit_settings = settings_from_config(config)
    site.access_log = config.access_log
    site.displayTracebacks = False
    return site, server


def open_storage(config: WardledConfig, reactor: Any) -> IStorage:
    """
    etcd at C{--etcd-servers}, or without them the embedded store in
    C{--data-dir}.

    @raise wardled.storage.interfaces.StorageError: the embedded store is
        locked by another process or unusable.
    """
    if config.etcd_servers:
        return EtcdStorage(
            reactor,
            config.etcd_servers,
            ca_file=config.etcd_cafile,
            cert_file=config.etcd_certfile,
            key_file=config.etcd_keyfile,
        )
    return SqliteStorage.open(reactor, config.data_dir)


def make_service(
    config: WardledConfig,
    reactor: Any,
    clusters: Clusters | None = None,
    configmap: Mapping[str, str] | None = None,
    environ: Mapping[str, str] | None = None,
    storage: IStorage | None = None,
) -> MultiService:
    """
    The whole server as a service tree.

    @param clusters: the clusters delegated to (none: stand-alone).
    @param configmap: the C{extension-apiserver-authentication} data read at
        start-up, if any.
    @param environ: the environment (systemd's C{NOTIFY_SOCKET} and
        C{WATCHDOG_USEC}); default the process's.
    @param storage: the storage, already open (the embedded store is opened
        before the reactor runs); default etcd at C{config.etcd_servers},
        or the embedded store in C{config.data_dir} without them.
    """
    top = MultiService()
    storage = storage or open_storage(config, reactor)
    ClosingService(storage).setServiceParent(top)
    if config.compaction_interval > 0:
        CompactionService(storage, reactor, config.compaction_interval).setServiceParent(top)
    audit = audit_backend(config, reactor)
    if audit is not None:
        audit.writer.setServiceParent(top)
    policy = None
    if config.authorization_policy_file:
        policy = PolicyFile.load(config.authorization_policy_file)
    access = build_access(config, reactor, clusters or Clusters(), configmap, policy)
    for service in access.services:
        service.setServiceParent(top)
    site, server = make_site(
        config, storage, reactor, access, None if audit is None else audit.trail
    )
    if server.multiplexer is not None:
        server.multiplexer.setServiceParent(top)
    CollectorTuning(reactor, endpoint_ready(server.readiness)).setServiceParent(top)
    listener = tls_endpoint_service(
        reactor, config, site, access.client_auth.current_handshake_authorities
    )
    notifier = SystemdNotifier(
        reactor,
        os.environ if environ is None else environ,
        endpoint_ready(server.readiness),
        f"serving on {listener.where}",
    )
    reloadables: list[IReloadable] = [
        ServingCertificate(*listener.serving_files, listener.tls),
        ClientCAFiles(config, access.client_auth, settings_from_flags),
    ]
    if policy is not None:
        reloadables.append(policy)
    ReloadService(reactor, reloadables, on_reload=notifier.on_reload).setServiceParent(top)
    # The listener and the notifier go under the drain (wardled.shutdown):
    # SIGTERM stops them first, the rest of the tree once requests are done.
    return serve_gracefully(
        reactor, top, listener, site, config.shutdown_delay_duration, reporters=(notifier,)
    )
