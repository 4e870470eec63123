# -*- test-case-name: tests.test_kubeclient -*-
"""
Where the core kube-apiserver is and how to authenticate to it.

wardled delegates authentication (TokenReview) and authorization
(SubjectAccessReview) to the cluster it extends, as every aggregated API
server does.  It finds that cluster the way client-go does: from a
kubeconfig file (C{--authentication-kubeconfig} and friends), or from the
service account Kubernetes mounts into every pod.  Both end in one
L{ClusterConfig}, with every certificate already read, so a bad path is
reported at startup in one line instead of at the first request.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import os
from collections.abc import Mapping
from typing import Any

import attrs
import yaml

SERVICE_ACCOUNT_ROOT = "/var/run/secrets/kubernetes.io/serviceaccount"
HOST_VARIABLE = "KUBERNETES_SERVICE_HOST"
PORT_VARIABLE = "KUBERNETES_SERVICE_PORT"

# Ways of authenticating that only client-go's plugins (or nobody, since
# Kubernetes 1.19) know; a user naming one must not silently go anonymous.
_UNSUPPORTED_USER_FIELDS = ("exec", "auth-provider", "username", "password")


class KubeconfigError(ValueError):
    """
    A kubeconfig or service-account mount cannot be used; the message says
    which file and what is wrong, in one line.
    """


@attrs.frozen
class ClusterConfig:
    """
    Everything needed to reach and authenticate to one kube-apiserver.

    @ivar server: C{https://host:port}, without a trailing slash.
    @ivar ca_data: PEM CA certificates to verify the server with; C{None}
        means the system's roots.
    @ivar client_cert_data: PEM client certificate (and chain) for mutual TLS.
    @ivar client_key_data: PEM private key of C{client_cert_data}.
    @ivar token: a bearer token.
    @ivar token_file: a file holding the bearer token, re-read by the client
        (service-account tokens are rotated); it wins over C{token}.
    @ivar insecure_skip_tls_verify: do not verify the server's certificate.
    @ivar tls_server_name: the name to verify the server's certificate
        against (and send as SNI) instead of the host in C{server}.
    """

    server: str
    ca_data: bytes | None = None
    client_cert_data: bytes | None = None
    client_key_data: bytes | None = None
    token: str | None = None
    token_file: str | None = None
    insecure_skip_tls_verify: bool = False
    tls_server_name: str | None = None


def _read_file(path: str) -> bytes:
    """
    Read a whole (small) file.

    @raise OSError: it cannot be read.
    """
    with open(path, "rb") as source:
        return source.read()


def _why(error: OSError) -> str:
    return error.strerror or str(error)


class _Document:
    """
    One parsed kubeconfig, with the error wording that names its file.
    """

    def __init__(self, path: str, content: Mapping[str, Any]) -> None:
        self.path = path
        self.directory = os.path.dirname(os.path.abspath(path))
        self.content = content

    def error(self, problem: str) -> KubeconfigError:
        return KubeconfigError(f"kubeconfig {self.path}: {problem}")

    def named(self, section: str, field: str, name: str) -> Mapping[str, Any]:
        """
        The C{field} mapping of the entry called C{name} in the list
        C{section} (C{clusters}, C{contexts} or C{users}).
        """
        entries = self.content.get(section) or []
        if not isinstance(entries, list):
            raise self.error(f"{section} is not a list")
        for entry in entries:
            if isinstance(entry, Mapping) and entry.get("name") == name:
                body = entry.get(field) or {}
                if not isinstance(body, Mapping):
                    raise self.error(f'{field} "{name}" is not a mapping')
                return body
        raise self.error(f'{field} "{name}" not found')

    def resolve(self, path: str) -> str:
        """
        A path from the kubeconfig, relative ones taken from its directory
        (as kubectl does).
        """
        return os.path.join(self.directory, os.path.expanduser(path))

    def file_or_data(
        self, what: str, body: Mapping[str, Any], field: str
    ) -> bytes | None:
        """
        The bytes of C{field} (a path) or C{field}-data (base64).

        @param what: the entry, for messages: C{cluster "c"} or C{user "u"}.
        """
        path = body.get(field)
        data = body.get(f"{field}-data")
        if path and data:
            raise self.error(f"{what} sets both {field} and {field}-data")
        if data:
            return self._decode(what, f"{field}-data", data)
        if path:
            return self.read(what, field, str(path))
        return None

    def read(self, what: str, field: str, path: str) -> bytes:
        resolved = self.resolve(path)
        try:
            return _read_file(resolved)
        except OSError as error:
            raise self.error(
                f"{what} {field} {resolved}: cannot read: {_why(error)}"
            ) from None

    def _decode(self, what: str, field: str, data: Any) -> bytes:
        try:
            return base64.b64decode(str(data), validate=True)
        except (binascii.Error, ValueError):
            raise self.error(f"{what} {field} is not valid base64") from None


def _parse(path: str) -> _Document:
    try:
        text = _read_file(path)
    except OSError as error:
        raise KubeconfigError(
            f"kubeconfig {path}: cannot read: {_why(error)}"
        ) from None
    try:
        content = yaml.safe_load(text)
    except yaml.YAMLError as error:
        where = getattr(error, "problem_mark", None)
        at = f" at line {where.line + 1}" if where is not None else ""
        raise KubeconfigError(f"kubeconfig {path}: not valid YAML{at}") from None
    if not isinstance(content, Mapping):
        raise KubeconfigError(f"kubeconfig {path}: not a kubeconfig (no mapping)")
    return _Document(path, content)


def _context(document: _Document, name: str | None) -> tuple[str, Mapping[str, Any]]:
    chosen = name or document.content.get("current-context")
    if not chosen:
        raise document.error("no current-context is set and no context was given")
    context = document.named("contexts", "context", str(chosen))
    return str(chosen), context


def _server(document: _Document, cluster_name: str, cluster: Mapping[str, Any]) -> str:
    server = cluster.get("server")
    if not server:
        raise document.error(f'cluster "{cluster_name}" has no server')
    server = str(server).rstrip("/")
    if not server.startswith(("https://", "http://")):
        raise document.error(
            f'cluster "{cluster_name}" server "{server}" is not an http(s) URL'
        )
    return server


def _cluster_fields(document: _Document, cluster_name: str) -> dict[str, Any]:
    cluster = document.named("clusters", "cluster", cluster_name)
    what = f'cluster "{cluster_name}"'
    ca_data = document.file_or_data(what, cluster, "certificate-authority")
    insecure = bool(cluster.get("insecure-skip-tls-verify", False))
    if insecure and ca_data is not None:
        raise document.error(
            f"{what} sets insecure-skip-tls-verify and a certificate authority"
        )
    server_name = cluster.get("tls-server-name")
    return {
        "server": _server(document, cluster_name, cluster),
        "ca_data": ca_data,
        "insecure_skip_tls_verify": insecure,
        "tls_server_name": str(server_name) if server_name else None,
    }


def _user_fields(document: _Document, user_name: str) -> dict[str, Any]:
    user = document.named("users", "user", user_name)
    what = f'user "{user_name}"'
    for field in _UNSUPPORTED_USER_FIELDS:
        if user.get(field):
            raise document.error(f"{what} uses {field}, which wardled does not support")
    cert = document.file_or_data(what, user, "client-certificate")
    key = document.file_or_data(what, user, "client-key")
    if (cert is None) != (key is None):
        present, absent = (
            ("client-certificate", "client-key")
            if key is None
            else ("client-key", "client-certificate")
        )
        raise document.error(f"{what} has a {present} but no {absent}")
    token_file = user.get("tokenFile")
    if token_file:
        token_file = document.resolve(str(token_file))
        document.read(what, "tokenFile", str(token_file))
    token = user.get("token")
    return {
        "client_cert_data": cert,
        "client_key_data": key,
        "token": str(token) if token else None,
        "token_file": token_file or None,
    }


def load_kubeconfig(path: str, context: str | None = None) -> ClusterConfig:
    """
    Read the cluster and credentials of one context of a kubeconfig file.

    Certificate files are read now; a C{tokenFile} is only checked to be
    readable and kept as a path, for the client to re-read.  A context
    without a user means no credentials (anonymous), as in kubectl.

    @param path: the kubeconfig file.
    @param context: the context to use; default its C{current-context}.
    @raise KubeconfigError: anything is missing, unreadable or malformed.
    """
    document = _parse(path)
    context_name, chosen = _context(document, context)
    cluster_name = chosen.get("cluster")
    if not cluster_name:
        raise document.error(f'context "{context_name}" names no cluster')
    fields = _cluster_fields(document, str(cluster_name))
    user_name = chosen.get("user")
    if user_name:
        fields.update(_user_fields(document, str(user_name)))
    return ClusterConfig(**fields)


def in_cluster_available(environ: Mapping[str, str] = os.environ) -> bool:
    """
    Whether this process runs in a pod with the service environment
    Kubernetes injects (what L{in_cluster_config} needs first).
    """
    return bool(environ.get(HOST_VARIABLE) and environ.get(PORT_VARIABLE))


def _host_port(host: str, port: str) -> str:
    try:
        is_v6 = ipaddress.ip_address(host).version == 6
    except ValueError:
        is_v6 = ":" in host
    return f"[{host}]:{port}" if is_v6 else f"{host}:{port}"


def in_cluster_config(
    environ: Mapping[str, str] = os.environ, root: str = SERVICE_ACCOUNT_ROOT
) -> ClusterConfig:
    """
    The configuration of a pod's service account, by client-go's rules:
    the server from C{KUBERNETES_SERVICE_HOST}/C{KUBERNETES_SERVICE_PORT},
    the token file C{root/token} (re-read by the client) and the CA
    C{root/ca.crt}.

    @param environ: the process environment.
    @param root: where the service account is mounted.
    @raise KubeconfigError: the environment variables are missing, or the
        token or CA cannot be read.
    """
    if not in_cluster_available(environ):
        raise KubeconfigError(
            "unable to load in-cluster configuration, KUBERNETES_SERVICE_HOST "
            "and KUBERNETES_SERVICE_PORT must be defined"
        )
    token_file = os.path.join(root, "token")
    ca_file = os.path.join(root, "ca.crt")
    try:
        _read_file(token_file)
        ca_data = _read_file(ca_file)
    except OSError as error:
        raise KubeconfigError(
            f"unable to load in-cluster configuration: cannot read "
            f"{error.filename}: {_why(error)}"
        ) from None
    server = "https://" + _host_port(environ[HOST_VARIABLE], environ[PORT_VARIABLE])
    return ClusterConfig(server=server, ca_data=ca_data, token_file=token_file)


__all__ = [
    "ClusterConfig",
    "KubeconfigError",
    "in_cluster_available",
    "in_cluster_config",
    "load_kubeconfig",
]
