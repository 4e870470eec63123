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


@attrs.frozen
class WardledConfig:
    """
    Everything the server needs to start.

    Field names follow the reference's flags (C{--secure-port} is
    C{secure_port}, and so on).
    """

    secure_port: int = 8443
    bind_address: str = "0.0.0.0"
    etcd_servers: tuple[str, ...] = ()
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
    # (plural, history length) pairs; resources not named keep the default.
    watch_cache_sizes: tuple[tuple[str, int], ...] = ()
    # kube-apiserver's static token CSV (--token-auth-file).
    token_auth_file: str | None = None
    # The stand-alone YAML policy (--authorization-policy-file), re-read on change.
    authorization_policy_file: str | None = None
