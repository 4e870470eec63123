# -*- test-case-name: tests.test_delegated -*-
"""
One blocking GET to the cluster, for start-up only.

The reference reads C{kube-system/extension-apiserver-authentication}
before it serves anything and refuses to start when it cannot; twistd can
only end with a non-zero status before the reactor runs, so this read uses
the standard library, not the reactor.  Everything later goes through
L{wardled.kube.client.KubeClient}.
"""

from __future__ import annotations

import http.client
import json
import os
import ssl
import tempfile
import urllib.parse
from typing import Any

from wardled.kube.kubeconfig import ClusterConfig


class BlockingRequestFailed(Exception):
    """
    The cluster could not be reached, or did not answer JSON; the message
    says why in one line.
    """


def _ssl_context(cluster: ClusterConfig) -> ssl.SSLContext:
    context = ssl.create_default_context(
        cadata=cluster.ca_data.decode("ascii") if cluster.ca_data else None
    )
    if cluster.insecure_skip_tls_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if cluster.client_cert_data and cluster.client_key_data:
        with tempfile.TemporaryDirectory() as directory:
            cert = os.path.join(directory, "client.crt")
            key = os.path.join(directory, "client.key")
            for path, data in ((cert, cluster.client_cert_data), (key, cluster.client_key_data)):
                with open(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600), "wb") as out:
                    out.write(data)
            context.load_cert_chain(cert, key)
    return context


def _token(cluster: ClusterConfig) -> str | None:
    if cluster.token:
        return cluster.token
    if cluster.token_file:
        with open(cluster.token_file, encoding="utf-8") as source:
            return source.read().strip() or None
    return None


def blocking_get(cluster: ClusterConfig, path: str, timeout: float) -> tuple[int, Any]:
    """
    GET C{path} from C{cluster}.

    @return: the status code and the decoded JSON body.
    @raise BlockingRequestFailed: no answer in C{timeout} seconds, a TLS or
        connection failure, or a body that is not JSON.
    """
    url = urllib.parse.urlsplit(cluster.server)
    try:
        connection = http.client.HTTPSConnection(
            url.hostname or "", url.port or 443, timeout=timeout, context=_ssl_context(cluster)
        )
        headers = {"Accept": "application/json", "User-Agent": "wardled"}
        token = _token(cluster)
        if token:
            headers["Authorization"] = f"Bearer {token}"
        try:
            connection.request("GET", url.path.rstrip("/") + path, headers=headers)
            response = connection.getresponse()
            status, body = response.status, response.read()
        finally:
            connection.close()
    except (OSError, ssl.SSLError, http.client.HTTPException) as error:
        reason = getattr(error, "strerror", None) or str(error) or type(error).__name__
        raise BlockingRequestFailed(f"GET {cluster.server}{path}: {reason}") from None
    try:
        return status, json.loads(body)
    except ValueError:
        raise BlockingRequestFailed(
            f"GET {cluster.server}{path}: HTTP {status}, not JSON"
        ) from None
