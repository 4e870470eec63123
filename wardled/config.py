# -*- test-case-name: tests.test_tap -*-
"""
The server's settings as one immutable value.

L{wardled.tap.Options} parses the command line into a L{WardledConfig};
L{wardled.server.make_service} builds the running server from it.  Keeping
the two apart lets tests build a server without going through twistd.
"""

from __future__ import annotations

import attrs

DEFAULT_ETCD_PREFIX = "/registry/wardle.example.com"
DEFAULT_CERT_DIR = "apiserver.local.config/certificates"
DEFAULT_DATA_DIR = "wardled-data"
DEFAULT_COMPACTION_INTERVAL = 300.0
DEFAULT_REVIEW_CACHE_TTL = 10.0
DEFAULT_ALWAYS_ALLOW_PATHS = ("/healthz", "/readyz", "/livez")


@attrs.frozen
class WardledConfig:
    """
    Everything the server needs to start.

    Field names follow the reference's flags (C{--secure-port} is
    C{secure_port}, and so on).
    """

    secure_port: int = 8443
    bind_address: str = "0.0.0.0"
    # No etcd servers: the embedded store in data_dir.
    etcd_servers: tuple[str, ...] = ()
    data_dir: str = DEFAULT_DATA_DIR
    # Seconds between compactions of old revisions (0: never).
    compaction_interval: float = DEFAULT_COMPACTION_INTERVAL
    etcd_prefix: str = DEFAULT_ETCD_PREFIX
    etcd_cafile: str | None = None
    etcd_certfile: str | None = None
    etcd_keyfile: str | None = None
    tls_cert_file: str | None = None
    tls_private_key_file: str | None = None
    client_ca_file: str | None = None
    cert_dir: str = DEFAULT_CERT_DIR
    disable_admission_plugins: frozenset[str] = frozenset()
    http2: bool = True
    access_log: bool = False
    # The audit log (--audit-log-*, --audit-policy-file); no path: no audit.
    audit_log_path: str | None = None
    audit_policy_file: str | None = None
    audit_log_maxage: int = 366
    audit_log_maxbackup: int = 100
    audit_log_maxsize: int = 100
    audit_log_format: str = "json"
    audit_log_compress: bool = False
    # (plural, history length) pairs; resources not named keep the default.
    watch_cache_sizes: tuple[tuple[str, int], ...] = ()
    # kube-apiserver's static token CSV (--token-auth-file).
    token_auth_file: str | None = None
    # The stand-alone YAML policy (--authorization-policy-file), re-read on change.
    authorization_policy_file: str | None = None
    # Front-proxy (requestheader) authentication.
    requestheader_client_ca_file: str | None = None
    requestheader_allowed_names: tuple[str, ...] = ()
    requestheader_username_headers: tuple[str, ...] = ("X-Remote-User",)
    requestheader_group_headers: tuple[str, ...] = ("X-Remote-Group",)
    requestheader_extra_headers_prefix: tuple[str, ...] = ("X-Remote-Extra-",)
    requestheader_uid_headers: tuple[str, ...] = ()
    # Delegation to kube-apiserver: the kubeconfig flags as given (None:
    # in-cluster config when running in a pod, else stand-alone).
    kubeconfig: str | None = None
    authentication_kubeconfig: str | None = None
    authorization_kubeconfig: str | None = None
    authentication_skip_lookup: bool = False
    authentication_tolerate_lookup_failure: bool = False
    authentication_token_webhook_cache_ttl: float = DEFAULT_REVIEW_CACHE_TTL
    authorization_always_allow_paths: tuple[str, ...] = DEFAULT_ALWAYS_ALLOW_PATHS
    authorization_webhook_cache_authorized_ttl: float = DEFAULT_REVIEW_CACHE_TTL
    authorization_webhook_cache_unauthorized_ttl: float = DEFAULT_REVIEW_CACHE_TTL
    # Seconds to keep serving after SIGTERM (with /readyz failing) before
    # the listener stops (--shutdown-delay-duration).
    shutdown_delay_duration: float = 0.0
    # Processes serving the port (--workers; wardled.workers): this one and
    # workers - 1 more, sharing it with SO_REUSEPORT.
    workers: int = 1
    # Limits (wardled.limits, wardled.connlimits): requests served at once
    # (0: no limit), seconds a non-watch request may take, seconds a
    # connection has to send a request head (0: no deadline).
    max_requests_inflight: int = 400
    max_mutating_requests_inflight: int = 200
    request_timeout: float = 60.0
    read_header_timeout: float = 32.0
