# -*- test-case-name: tests.test_tap -*-
"""
The C{twistd wardled} command line.

L{Options} takes the reference server's flag names (C{--secure-port},
C{--etcd-servers}, C{--client-ca-file}, ...) and checks everything that can
be checked before the reactor runs: values, readable files, a certificate
that matches its key.  L{makeService} then checks that etcd answers and
hands a L{WardledConfig} to L{wardled.server.make_service}.

Every mistake ends the process with one line on stderr (C{wardled: error:
...}) and a non-zero status, never a traceback or the whole usage text.
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import ssl
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

from twisted.application.service import IService
from twisted.logger import Logger
from twisted.python import usage

from wardled import tls
from wardled.admission import KNOWN_PLUGINS
from wardled.audit.log import (
    AuditConfigError,
    check_audit_config,
    parse_count,
    parse_format,
)
from wardled.auth.clientauth import ClientAuthError
from wardled.auth.configmap import LookupFailed, lookup_blocking
from wardled.auth.policy import PolicyError, PolicyFile
from wardled.auth.tokenfile import TokenFileError, load_token_file
from wardled.config import (
    DEFAULT_ALWAYS_ALLOW_PATHS,
    DEFAULT_CERT_DIR,
    DEFAULT_DATA_DIR,
    DEFAULT_ETCD_PREFIX,
    WardledConfig,
)
from wardled.kube.clusters import Clusters, resolve_clusters
from wardled.kube.kubeconfig import KubeconfigError
from wardled.limits import parse_go_duration, parse_limit
from wardled.workers import (
    SOCKET_ACTIVATION_ERROR,
    TwistdCommand,
    check_workers,
    parse_workers,
    worker_index,
    worker_services,
)

log = Logger()

PROGRAM = "wardled"
ETCD_HEALTH_TIMEOUT = 3.0

# (flag, WardledConfig field) of every option naming a file to read.
_FILE_FLAGS = (
    ("tls-cert-file", "tls_cert_file"),
    ("tls-private-key-file", "tls_private_key_file"),
    ("client-ca-file", "client_ca_file"),
    ("etcd-cafile", "etcd_cafile"),
    ("etcd-certfile", "etcd_certfile"),
    ("etcd-keyfile", "etcd_keyfile"),
    ("token-auth-file", "token_auth_file"),
    ("authorization-policy-file", "authorization_policy_file"),
    ("audit-policy-file", "audit_policy_file"),
    ("requestheader-client-ca-file", "requestheader_client_ca_file"),
    ("kubeconfig", "kubeconfig"),
    ("authentication-kubeconfig", "authentication_kubeconfig"),
    ("authorization-kubeconfig", "authorization_kubeconfig"),
)

# Flags that take a comma-separated list (pflag's StringSlice: repeating the
# flag adds to the list), with their defaults.
_LIST_FLAGS: dict[str, tuple[str, ...]] = {
    "requestheader-allowed-names": (),
    "requestheader-username-headers": ("X-Remote-User",),
    "requestheader-group-headers": ("X-Remote-Group",),
    "requestheader-extra-headers-prefix": ("X-Remote-Extra-",),
    "requestheader-uid-headers": (),
    "authorization-always-allow-paths": DEFAULT_ALWAYS_ALLOW_PATHS,
}



def fail(message: str) -> SystemExit:
    """
    The exception that ends the process with C{wardled: error: message}.
    """
    return SystemExit(f"{PROGRAM}: error: {message}")


def _split_list(value: str) -> list[str]:
    return [each.strip() for each in value.split(",") if each.strip()]


def parse_duration(flag: str, value: str) -> float:
    """
    Parse a Go duration (C{10s}, C{1m30s}, C{500ms}, C{0}) into seconds,
    as Go's flag package does (L{parse_go_duration}), refusing negatives.

    @raise usage.UsageError: not a duration, or negative.
    """
    try:
        seconds = parse_go_duration(value.strip())
    except ValueError:
        seconds = -1.0
    if seconds < 0:
        raise usage.UsageError(
            f"invalid --{flag} {value!r}: want a duration such as 10s, 1m30s or 500ms"
        )
    return seconds


def parse_always_allow_paths(values: Sequence[str]) -> tuple[str, ...]:
    """
    Check C{--authorization-always-allow-paths}: each starts with C{/}, and
    a C{*} may only end one.

    @raise usage.UsageError: one does not.
    """
    for path in values:
        if not path.startswith("/") or "*" in path[:-1]:
            raise usage.UsageError(
                f"invalid --authorization-always-allow-paths entry {path!r}: want "
                "/path or /prefix* "
            )
    return tuple(values)


def parse_port(value: str) -> int:
    """
    Parse C{--secure-port}.

    @raise usage.UsageError: not an integer in 1..65535.
    """
    try:
        port = int(value)
    except ValueError:
        port = -1
    if not 1 <= port <= 65535:
        raise usage.UsageError(
            f"invalid --secure-port {value!r}: must be an integer in 1..65535"
        )
    return port


def parse_bind_address(value: str) -> str:
    """
    Parse C{--bind-address}: an IPv4 or IPv6 address.

    @raise usage.UsageError: not an IP address.
    """
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise usage.UsageError(
            f"invalid --bind-address {value!r}: not an IP address"
        ) from None


def _is_http_url(value: str) -> bool:
    parsed = urllib.parse.urlsplit(value)
    try:
        parsed.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        return False
    return parsed.scheme in ("http", "https") and bool(parsed.hostname)


def parse_etcd_servers(value: str | None) -> tuple[str, ...]:
    """
    Parse C{--etcd-servers}: a comma-separated list of http(s) URLs; not
    given, the embedded store is used (C{()}).

    @raise usage.UsageError: given but empty, or an entry is not an http(s)
        URL with a host.
    """
    if value is None:
        return ()
    servers = _split_list(value)
    if not servers:
        raise usage.UsageError("--etcd-servers must be specified")
    for server in servers:
        if not _is_http_url(server):
            raise usage.UsageError(
                f"invalid --etcd-servers entry {server!r}: "
                "want http://host:port or https://host:port"
            )
    return tuple(server.rstrip("/") for server in servers)


def parse_admission_plugins(names: Sequence[str]) -> frozenset[str]:
    """
    Check C{--disable-admission-plugins} names against the known plugins.

    @raise usage.UsageError: a name is unknown (worded like the reference).
    """
    for name in names:
        if name not in KNOWN_PLUGINS:
            raise usage.UsageError(
                f'disable-admission-plugins plugin "{name}" is unknown'
            )
    return frozenset(names)


WATCH_CACHE_RESOURCES = ("flunders.wardle.example.com", "fischers.wardle.example.com")


def parse_watch_cache_sizes(value: str | None) -> tuple[tuple[str, int], ...]:
    """
    C{--watch-cache-sizes} as the reference spells it
    (C{flunders.wardle.example.com#5000,...}): the history length per resource.

    @raise usage.UsageError: an unknown resource, a bad number, or 0 (the
        reference's "no cache"; wardled serves watches from the cache).
    """
    sizes: list[tuple[str, int]] = []
    for entry in _split_list(value or ""):
        resource, sep, number = entry.partition("#")
        if not sep or resource not in WATCH_CACHE_RESOURCES:
            raise usage.UsageError(
                f"invalid --watch-cache-sizes entry {entry!r}: want "
                "flunders.wardle.example.com#SIZE or fischers.wardle.example.com#SIZE"
            )
        if not number.isdigit() or int(number) < 1:
            raise usage.UsageError(
                f"invalid --watch-cache-sizes size {number!r} for {resource}: "
                "want a whole number of events >= 1 (wardled always caches)"
            )
        sizes.append((resource.partition(".")[0], int(number)))
    return tuple(sizes)


def check_readable(flag: str, path: str) -> None:
    """
    Check that the file given to C{--flag} can be read.

    @raise usage.UsageError: it cannot, with the operating system's reason.
    """
    try:
        with open(path, "rb") as source:
            source.read(1)
    except OSError as error:
        raise usage.UsageError(
            f"cannot read --{flag} {path}: {error.strerror or error}"
        ) from None


def etcd_ssl_context(config: WardledConfig) -> ssl.SSLContext:
    """
    The client TLS settings for https etcd servers: C{--etcd-cafile} (or
    the system's CAs) and the C{--etcd-certfile}/C{--etcd-keyfile} pair.

    @raise ssl.SSLError: a file is malformed or the key does not match.
    @raise OSError: a file cannot be read.
    """
    context = ssl.create_default_context(cafile=config.etcd_cafile)
    if config.etcd_certfile and config.etcd_keyfile:
        context.load_cert_chain(config.etcd_certfile, config.etcd_keyfile)
    return context


def _check_tls_files(config: WardledConfig) -> None:
    """
    Check that the serving pair, the client CA and the etcd TLS files are
    usable.

    @raise usage.UsageError: one is not, naming the flag.
    """
    try:
        if config.tls_cert_file and config.tls_private_key_file:
            tls.server_tls_options(
                config.tls_cert_file,
                config.tls_private_key_file,
                config.client_ca_file,
            )
        elif config.client_ca_file:
            tls.load_certificates(config.client_ca_file)
    except tls.TLSConfigError as error:
        raise usage.UsageError(
            f"--tls-cert-file/--tls-private-key-file/--client-ca-file: {error}"
        ) from None
    if config.requestheader_client_ca_file:
        try:
            tls.load_certificates(config.requestheader_client_ca_file)
        except tls.TLSConfigError as error:
            raise usage.UsageError(f"--requestheader-client-ca-file: {error}") from None
    if any((config.etcd_cafile, config.etcd_certfile)):
        try:
            etcd_ssl_context(config)
        except (ssl.SSLError, OSError, ValueError) as error:
            raise usage.UsageError(
                f"--etcd-cafile/--etcd-certfile/--etcd-keyfile: {error}"
            ) from None


def _check_auth_files(config: WardledConfig) -> None:
    """
    Check that the token file and the authorization policy parse.

    @raise usage.UsageError: one does not, naming the flag and the reason.
    """
    try:
        if config.token_auth_file:
            load_token_file(config.token_auth_file)
    except TokenFileError as error:
        raise usage.UsageError(f"--token-auth-file: {error}") from None
    try:
        if config.authorization_policy_file:
            PolicyFile.load(config.authorization_policy_file)
    except PolicyError as error:
        raise usage.UsageError(f"--authorization-policy-file: {error}") from None


def _check_pairs(config: WardledConfig) -> None:
    pairs = (
        ("tls-cert-file", "tls-private-key-file"),
        ("etcd-certfile", "etcd-keyfile"),
    )
    for first, second in pairs:
        given = [
            bool(getattr(config, flag.replace("-", "_")))
            for flag in (first, second)
        ]
        if any(given) and not all(given):
            raise usage.UsageError(f"--{first} and --{second} must be given together")


_ETCD_SERVERS_HELP = (
    "Comma-separated etcd client URLs, e.g. http://127.0.0.1:2379; without "
    "it objects are kept in the embedded store in --data-dir."
)
_TLS_CERT_HELP = (
    "Serving certificate (PEM, chain after it). Without it a self-signed "
    "pair is made in --cert-dir."
)
_CLIENT_CA_HELP = (
    "CA bundle for client certificates; enables x509 client authentication "
    "(user = CN, groups = O)."
)
_TOKEN_FILE_HELP = (
    "Static bearer tokens, kube-apiserver's CSV: token,user,uid,\"group1,group2\" "
    "(read at start)."
)
_POLICY_FILE_HELP = (
    "YAML rules granting users/groups verbs on resources, namespaces, names "
    "or paths (after system:masters); re-read when it changes."
)
_CERT_DIR_HELP = (
    "Where the self-signed apiserver.crt/apiserver.key are kept (ignored "
    "with --tls-cert-file)."
)


_LIST_HELP = {
    "requestheader-allowed-names": "Front-proxy client certificate CNs allowed (default: any).",
    "requestheader-username-headers": "Headers holding the user name.",
    "requestheader-group-headers": "Headers holding groups (one group per value).",
    "requestheader-extra-headers-prefix": "Prefixes of headers holding extra user info.",
    "requestheader-uid-headers": "Headers holding the user's uid.",
    "authorization-always-allow-paths": "Paths anyone may GET without authorization.",
}


def _list_option(flag: str) -> Callable[[Any, str], None]:
    """
    An C{opt_} method for a comma-separated list flag: each use adds to the
    list, which then replaces the default.
    """

    def add(self: Any, value: str) -> None:
        self.lists[flag] = [*(self.lists[flag] or ()), *_split_list(value)]

    default = ",".join(_LIST_FLAGS[flag]) or "none"
    add.__doc__ = f"{_LIST_HELP[flag]} Comma-separated; default {default}."
    return add


class Options(usage.Options):
    """
    C{twistd wardled} options; after parsing, L{config} holds them as a
    L{WardledConfig}.
    """

    synopsis = "[options]"
    longdesc = (
        "Serve the wardle.example.com API (Flunders and Fischers) over HTTPS, "
        "storing objects in etcd. Clients authenticate with x509 client "
        "certificates signed by --client-ca-file (user = CN, groups = O)."
    )

    optParameters: ClassVar[list[list[str | None]]] = [
        ["secure-port", None, "8443", "HTTPS port (1-65535)."],
        ["bind-address", None, "0.0.0.0", "IP address to listen on."],
        ["etcd-servers", None, None, _ETCD_SERVERS_HELP],
        [
            "data-dir",
            None,
            DEFAULT_DATA_DIR,
            ("Directory of the embedded store (used without --etcd-servers); "
            "one wardled process per directory."),
        ],
        [
            "etcd-compaction-interval",
            None,
            "5m",
            "How often old revisions are compacted away (etcd or embedded); 0 = never.",
        ],
        ["etcd-prefix", None, DEFAULT_ETCD_PREFIX, "Key prefix for objects in etcd."],
        ["etcd-cafile", None, None, "CA bundle that signs https etcd servers."],
        ["etcd-certfile", None, None, "Client certificate for etcd (PEM)."],
        ["etcd-keyfile", None, None, "Key of --etcd-certfile (PEM)."],
        ["tls-cert-file", None, None, _TLS_CERT_HELP],
        ["tls-private-key-file", None, None, "Key of --tls-cert-file (PEM)."],
        ["client-ca-file", None, None, _CLIENT_CA_HELP],
        ["cert-dir", None, DEFAULT_CERT_DIR, _CERT_DIR_HELP],
        ["token-auth-file", None, None, _TOKEN_FILE_HELP],
        ["authorization-policy-file", None, None, _POLICY_FILE_HELP],
        ["audit-log-path", None, None, "Write audit events to this file ('-': standard output)."],
        ["audit-policy-file", None, None, "audit.k8s.io/v1 Policy; without it nothing is audited."],
        ["audit-log-maxage", None, "366", "Days to keep rotated audit logs (0: no limit)."],
        ["audit-log-maxbackup", None, "100", "Rotated audit logs to keep (0: no limit)."],
        ["audit-log-maxsize", None, "100", "MiB before the audit log is rotated (0: never)."],
        ["audit-log-format", None, "json", "Audit log format: json or legacy (one text line)."],
        [
            "requestheader-client-ca-file",
            None,
            None,
            ("CA bundle of the front proxy (the aggregator); X-Remote-* headers "
            "are believed only on connections with a client certificate it signed."),
        ],
        ["kubeconfig", None, None, "kubeconfig of the core cluster (namespaces); default in-cluster."],
        [
            "authentication-kubeconfig",
            None,
            None,
            ("kubeconfig for TokenReview and the extension-apiserver-authentication "
            "ConfigMap; default in-cluster."),
        ],
        [
            "authorization-kubeconfig",
            None,
            None,
            "kubeconfig for SubjectAccessReview; default in-cluster.",
        ],
        ["authentication-token-webhook-cache-ttl", None, "10s", "How long TokenReview answers are cached."],
        [
            "authorization-webhook-cache-authorized-ttl",
            None,
            "10s",
            "How long allowed SubjectAccessReview answers are cached.",
        ],
        [
            "authorization-webhook-cache-unauthorized-ttl",
            None,
            "10s",
            "How long denied SubjectAccessReview answers are cached.",
        ],
        [
            "watch-cache-sizes",
            None,
            None,
            (
                "Watch history length per resource, e.g. "
                "flunders.wardle.example.com#20000 (default 10000 events)."
            ),
        ],
        [
            "shutdown-delay-duration",
            None,
            "0s",
            (
                "After SIGTERM, keep serving this long (with /readyz failing) "
                "before the listener stops, e.g. 10s."
            ),
        ],
        [
            "max-requests-inflight",
            None,
            "400",
            "Read-only requests served at once; more get 429 (0: no limit).",
        ],
        [
            "max-mutating-requests-inflight",
            None,
            "200",
            "Mutating requests served at once; more get 429 (0: no limit).",
        ],
        [
            "request-timeout",
            None,
            "1m0s",
            "How long a request other than a watch may take before it gets 504.",
        ],
        [
            "read-header-timeout",
            None,
            "32s",
            "How long a connection has to send a complete request head (0: no limit).",
        ],
        [
            "workers",
            None,
            "1",
            (
                "Processes serving the port (SO_REUSEPORT), each with its own "
                "etcd watches and caches; > 1 needs --etcd-servers."
            ),
        ],
    ]

    optFlags: ClassVar[list[list[str | None]]] = [
        ["disable-http2-serving", None, "Offer only HTTP/1.1 (no h2 over ALPN)."],
        ["access-log", None, "Log one line per request."],
        ["audit-log-compress", None, "Gzip rotated audit logs."],
        [
            "authentication-skip-lookup",
            None,
            "Do not read kube-system/extension-apiserver-authentication.",
        ],
        [
            "authentication-tolerate-lookup-failure",
            None,
            "Start even if that ConfigMap cannot be read (requests may then be anonymous).",
        ],
    ]

    config: WardledConfig
    arguments: tuple[str, ...] = ()

    def __init__(self) -> None:
        super().__init__()
        self.disabled_admission_plugins: list[str] = []
        self.lists: dict[str, list[str] | None] = dict.fromkeys(_LIST_FLAGS)

    opt_requestheader_allowed_names = _list_option("requestheader-allowed-names")
    opt_requestheader_username_headers = _list_option("requestheader-username-headers")
    opt_requestheader_group_headers = _list_option("requestheader-group-headers")
    opt_requestheader_extra_headers_prefix = _list_option(
        "requestheader-extra-headers-prefix"
    )
    opt_requestheader_uid_headers = _list_option("requestheader-uid-headers")
    opt_authorization_always_allow_paths = _list_option("authorization-always-allow-paths")

    def _list(self, flag: str) -> tuple[str, ...]:
        given = self.lists[flag]
        return _LIST_FLAGS[flag] if given is None else tuple(given)

    def opt_disable_admission_plugins(self, value: str) -> None:
        """
        Comma-separated admission plugins to turn off (known: BanFlunder).
        """
        self.disabled_admission_plugins.extend(_split_list(value))

    def parseOptions(self, options: Sequence[str] | None = None) -> None:
        """
        Parse the command line; a mistake ends the process with one line.

        @raise SystemExit: C{--help} (status 0) or a bad flag or value.
        """
        try:
            # The arguments as given, for wardled.workers to start copies.
            self.arguments = tuple(sys.argv[1:] if options is None else options)
            super().parseOptions(_go_bool_flags(options, self.optFlags))
        except usage.UsageError as error:
            raise fail(str(error)) from None

    def _duration(self, flag: str) -> float:
        return parse_duration(flag, self[flag])

    def _limit(self, flag: str) -> int:
        try:
            return parse_limit(flag, self[flag])
        except ValueError as error:
            raise usage.UsageError(str(error)) from None

    def postOptions(self) -> None:
        """
        Check every value and file and build L{config}.

        @raise usage.UsageError: something is wrong.
        """
        for flag, _ in _FILE_FLAGS:
            if self[flag] is not None:
                check_readable(flag, self[flag])
        self.config = WardledConfig(
            secure_port=parse_port(self["secure-port"]),
            bind_address=parse_bind_address(self["bind-address"]),
            etcd_servers=parse_etcd_servers(self["etcd-servers"]),
            data_dir=self["data-dir"],
            compaction_interval=self._duration("etcd-compaction-interval"),
            etcd_prefix=self["etcd-prefix"],
            etcd_cafile=self["etcd-cafile"],
            etcd_certfile=self["etcd-certfile"],
            etcd_keyfile=self["etcd-keyfile"],
            tls_cert_file=self["tls-cert-file"],
            tls_private_key_file=self["tls-private-key-file"],
            client_ca_file=self["client-ca-file"],
            cert_dir=self["cert-dir"],
            disable_admission_plugins=parse_admission_plugins(
                self.disabled_admission_plugins
            ),
            http2=not self["disable-http2-serving"],
            access_log=bool(self["access-log"]),
            audit_log_path=self["audit-log-path"],
            audit_policy_file=self["audit-policy-file"],
            audit_log_maxage=parse_count("audit-log-maxage", self["audit-log-maxage"]),
            audit_log_maxbackup=parse_count("audit-log-maxbackup", self["audit-log-maxbackup"]),
            audit_log_maxsize=parse_count("audit-log-maxsize", self["audit-log-maxsize"]),
            audit_log_format=parse_format(self["audit-log-format"]),
            audit_log_compress=bool(self["audit-log-compress"]),
            watch_cache_sizes=parse_watch_cache_sizes(self["watch-cache-sizes"]),
            token_auth_file=self["token-auth-file"],
            authorization_policy_file=self["authorization-policy-file"],
            requestheader_client_ca_file=self["requestheader-client-ca-file"],
            requestheader_allowed_names=self._list("requestheader-allowed-names"),
            requestheader_username_headers=self._list("requestheader-username-headers"),
            requestheader_group_headers=self._list("requestheader-group-headers"),
            requestheader_extra_headers_prefix=self._list(
                "requestheader-extra-headers-prefix"
            ),
            requestheader_uid_headers=self._list("requestheader-uid-headers"),
            kubeconfig=self["kubeconfig"],
            authentication_kubeconfig=self["authentication-kubeconfig"],
            authorization_kubeconfig=self["authorization-kubeconfig"],
            authentication_skip_lookup=bool(self["authentication-skip-lookup"]),
            authentication_tolerate_lookup_failure=bool(
                self["authentication-tolerate-lookup-failure"]
            ),
            authentication_token_webhook_cache_ttl=self._duration(
                "authentication-token-webhook-cache-ttl"
            ),
            authorization_always_allow_paths=parse_always_allow_paths(
                self._list("authorization-always-allow-paths")
            ),
            authorization_webhook_cache_authorized_ttl=self._duration(
                "authorization-webhook-cache-authorized-ttl"
            ),
            authorization_webhook_cache_unauthorized_ttl=self._duration(
                "authorization-webhook-cache-unauthorized-ttl"
            ),
            shutdown_delay_duration=self._duration("shutdown-delay-duration"),
            max_requests_inflight=self._limit("max-requests-inflight"),
            max_mutating_requests_inflight=self._limit("max-mutating-requests-inflight"),
            request_timeout=self._duration("request-timeout"),
            read_header_timeout=self._duration("read-header-timeout"),
            workers=parse_workers(self["workers"]),
        )
        _check_pairs(self.config)
        _check_tls_files(self.config)
        _check_auth_files(self.config)
        check_audit_config(self.config)
        check_workers(self.config)


def _go_bool_flags(
    arguments: Sequence[str] | None, flags: Sequence[Sequence[str | None]]
) -> Sequence[str] | None:
    """
    Accept Go's C{--flag=true} and C{--flag=false} for boolean flags, as the
    reference's command line does: C{=true} is the bare flag, C{=false}
    leaves it out.

    @raise usage.UsageError: another value.
    """
    if arguments is None:
        return None
    names = {str(flag[0]) for flag in flags}
    result: list[str] = []
    for argument in arguments:
        name, equals, value = argument.partition("=")
        if not (equals and name.startswith("--") and name[2:] in names):
            result.append(argument)
            continue
        if value.lower() in ("true", "1", "t"):
            result.append(name)
        elif value.lower() not in ("false", "0", "f"):
            raise usage.UsageError(f"invalid {name} {value!r}: want true or false")
    return result


def _looks_like_etcd_health(body: bytes) -> bool:
    try:
        document = json.loads(body)
    except ValueError:
        return False
    return isinstance(document, dict) and "health" in document


def _etcd_answer(server: str, context: ssl.SSLContext | None) -> str | None:
    """
    Ask C{server}'s C{/health} (directly, ignoring any proxy settings).

    @return: C{None} if etcd answered (healthy or not: a member without a
        leader answers 503 and may recover), else why not.
    """
    handlers: list[urllib.request.BaseHandler] = [urllib.request.ProxyHandler({})]
    if context is not None:
        handlers.append(urllib.request.HTTPSHandler(context=context))
    opener = urllib.request.build_opener(*handlers)
    try:
        with opener.open(server + "/health", timeout=ETCD_HEALTH_TIMEOUT) as response:
            status, body = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, body = error.code, error.read()
    except urllib.error.URLError as error:
        reason = error.reason
        return str(getattr(reason, "strerror", None) or reason)
    except (OSError, ValueError) as error:
        return str(getattr(error, "strerror", None) or error)
    if _looks_like_etcd_health(body):
        return None
    return f"not an etcd server (HTTP {status} to GET /health)"


def check_etcd_reachable(config: WardledConfig) -> None:
    """
    Check, blocking for at most L{ETCD_HEALTH_TIMEOUT} seconds per server,
    that at least one etcd server answers C{GET /health}.

    Runs in L{makeService}, before the reactor starts.

    @raise SystemExit: none answered; the line names each server and why.
    """
    context = None
    if any(server.startswith("https:") for server in config.etcd_servers):
        context = etcd_ssl_context(config)
    reasons = []
    for server in config.etcd_servers:
        reason = _etcd_answer(server, context)
        if reason is None:
            return
        reasons.append(f"{server}: {reason}")
    raise fail(f"cannot reach etcd (--etcd-servers): {'; '.join(reasons)}")


def check_can_listen(config: WardledConfig, reuse_port: bool = False) -> None:
    """
    Check that C{--bind-address}:C{--secure-port} can be listened on (not
    taken, allowed, an address of this host) by binding it once, the way
    Twisted will (with C{SO_REUSEADDR}), before the reactor starts.

    @param reuse_port: bind with C{SO_REUSEPORT} too, as a C{--workers}
        worker does (its parent already listens there).  The parent probes
        without it, so a port another server holds, even another wardled
        with workers, is refused rather than shared.
    @raise SystemExit: it cannot; the line says why.
    """
    family = socket.AF_INET6 if ":" in config.bind_address else socket.AF_INET
    probe = socket.socket(family, socket.SOCK_STREAM)
    try:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        probe.bind((config.bind_address, config.secure_port))
        probe.listen(1)
    except OSError as error:
        host = config.bind_address
        where = f"[{host}]" if family == socket.AF_INET6 else host
        raise fail(
            f"cannot listen on {where}:{config.secure_port}: "
            f"{error.strerror or error}"
        ) from None
    finally:
        probe.close()


def _ensure_serving_cert(config: WardledConfig) -> None:
    """
    Make the self-signed serving pair now when no C{--tls-cert-file} is
    given, so a bad C{--cert-dir} is reported in one line.
    """
    if config.tls_cert_file:
        return
    try:
        tls.ensure_self_signed_cert(config.cert_dir, config.bind_address)
    except OSError as error:
        raise fail(
            f"cannot create a self-signed certificate in --cert-dir "
            f"{config.cert_dir}: {error.strerror or error}"
        ) from None


def resolve_delegation(
    config: WardledConfig, environ: Mapping[str, str] = os.environ
) -> tuple[Clusters, dict[str, str] | None]:
    """
    Find the clusters to delegate to and, unless told not to, read the
    C{extension-apiserver-authentication} ConfigMap (blocking, before the
    reactor runs, as the reference does before serving).

    @return: the clusters and the ConfigMap's data (C{None}: none, not
        looked up, or a tolerated failure).
    @raise SystemExit: a kubeconfig cannot be used, or the ConfigMap cannot
        be read and C{--authentication-tolerate-lookup-failure} is not set.
    """
    try:
        clusters = resolve_clusters(config, environ)
    except KubeconfigError as error:
        raise fail(str(error)) from None
    if clusters.authentication is None or config.authentication_skip_lookup:
        return clusters, None
    try:
        return clusters, lookup_blocking(clusters.authentication)
    except LookupFailed as error:
        if not config.authentication_tolerate_lookup_failure:
            raise fail(
                f"unable to load configmap based request-header-client-ca-file: {error}"
            ) from None
        log.warn(  # noqa: G010 - twisted.logger has no warning()
            "Error looking up in-cluster authentication configuration: {error}; "
            "continuing without it (requests may be treated as anonymous)",
            error=error,
        )
        return clusters, None


def open_embedded_store(config: WardledConfig, reactor: Any) -> Any:
    """
    Open the embedded store in C{--data-dir} now, before the reactor runs,
    so a directory another wardled holds is reported in one line.

    @raise SystemExit: it cannot be opened.
    """
    from wardled.storage.interfaces import StorageError
    from wardled.storage.sqlite import SqliteStorage

    try:
        return SqliteStorage.open(reactor, config.data_dir)
    except OSError as error:
        raise fail(
            f"cannot use --data-dir {config.data_dir}: {error.strerror or error}"
        ) from None
    except StorageError as error:
        raise fail(str(error)) from None


def makeService(options: Options) -> IService:
    """
    Build the wardled service from parsed L{Options} (the twistd plugin's
    entry point).

    @raise SystemExit: the port cannot be listened on, etcd does not
        answer, the certificates cannot be set up, or delegation to the
        cluster cannot be set up.
    """
    config = options.config
    from twisted.internet import reactor

    if tls.inherited_endpoint(reactor) is None:  # socket activation: systemd listens
        check_can_listen(config, reuse_port=worker_index(os.environ) > 0)
    elif config.workers > 1:
        raise fail(SOCKET_ACTIVATION_ERROR)
    storage = None
    if config.etcd_servers:
        check_etcd_reachable(config)
    else:
        storage = open_embedded_store(config, reactor)
    _ensure_serving_cert(config)
    clusters, configmap = resolve_delegation(config)
    from wardled.server import make_service

    try:
        service = make_service(config, reactor, clusters, configmap, storage=storage)
    except (
        tls.TLSConfigError, TokenFileError, PolicyError, ClientAuthError, AuditConfigError
    ) as error:
        raise fail(str(error)) from None
    # --workers: the parent starts and supervises the others (wardled.workers).
    for each in worker_services(config, reactor, TwistdCommand.from_options(options)):
        each.setServiceParent(service)
    return service
