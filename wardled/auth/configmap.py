# -*- test-case-name: tests.test_reviews -*-
"""
The client and front-proxy CAs kube-apiserver publishes for extension
servers: the ConfigMap C{kube-system/extension-apiserver-authentication}.

Like the reference, wardled reads it before serving (unless
C{--authentication-skip-lookup}) and refuses to start when it cannot
(unless C{--authentication-tolerate-lookup-failure}); flags win over the
ConfigMap (L{wardled.auth.clientauth.merge_configmap}).  Unlike a restart-only
reader, L{ConfigMapRefresher} re-reads it every few seconds, so a rotated CA
takes effect for new connections without a restart; a read that fails
keeps the settings in use.
"""

from __future__ import annotations

from typing import Any

from cryptography import x509
from twisted.application.internet import TimerService
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from wardled import tls
from wardled.auth.clientauth import (
    ClientAuth,
    ClientAuthError,
    ClientAuthSettings,
    RequestHeaderSettings,
)
from wardled.config import WardledConfig
from wardled.kube.blocking import BlockingRequestFailed, blocking_get
from wardled.kube.client import KubeAPIError, KubeClient, KubeUnavailable
from wardled.kube.kubeconfig import ClusterConfig

NAMESPACE = "kube-system"
NAME = "extension-apiserver-authentication"
CONFIGMAP_PATH = f"/api/v1/namespaces/{NAMESPACE}/configmaps/{NAME}"
READER_ROLE = "extension-apiserver-authentication-reader"
REFRESH_INTERVAL = 5.0
LOOKUP_TIMEOUT = 10.0

log = Logger()


class LookupFailed(Exception):
    """
    The ConfigMap could not be read; the message says why in one line.
    """


def settings_from_flags(config: WardledConfig) -> ClientAuthSettings:
    """
    The client-certificate settings the command line gives.

    @raise wardled.tls.TLSConfigError: a CA file cannot be used.
    """
    client: tuple[x509.Certificate, ...] = ()
    if config.client_ca_file:
        client = tuple(tls.load_certificates(config.client_ca_file))
    requestheader = None
    if config.requestheader_client_ca_file:
        requestheader = RequestHeaderSettings(
            authorities=tuple(tls.load_certificates(config.requestheader_client_ca_file)),
            allowed_names=config.requestheader_allowed_names,
            username_headers=config.requestheader_username_headers,
            group_headers=config.requestheader_group_headers,
            extra_prefixes=config.requestheader_extra_headers_prefix,
            uid_headers=config.requestheader_uid_headers,
        )
    return ClientAuthSettings(client, requestheader)


def flags_given(config: WardledConfig) -> tuple[bool, bool]:
    """
    Whether C{--client-ca-file} and C{--requestheader-client-ca-file} were
    given (those kinds are then not taken from the ConfigMap).
    """
    return bool(config.client_ca_file), bool(config.requestheader_client_ca_file)


def _data(configmap: Any) -> dict[str, str]:
    data = configmap.get("data") if isinstance(configmap, dict) else None
    if not isinstance(data, dict):
        return {}
    return {str(key): str(value) for key, value in data.items()}


def _forbidden_hint() -> str:
    return (
        f"forbidden to get configmap/{NAME} in {NAMESPACE}; usually fixed by "
        f"'kubectl create rolebinding -n {NAMESPACE} ROLEBINDING_NAME "
        f"--role={READER_ROLE} --serviceaccount=YOUR_NS:YOUR_SA'"
    )


def lookup_blocking(cluster: ClusterConfig, timeout: float = LOOKUP_TIMEOUT) -> dict[str, str] | None:
    """
    Read the ConfigMap's C{data} before the reactor runs.

    @return: its data, or C{None} when it does not exist (kube-apiserver
        then has nothing to tell; as in the reference, that is not an error).
    @raise LookupFailed: it could not be read.
    """
    try:
        status, body = blocking_get(cluster, CONFIGMAP_PATH, timeout)
    except BlockingRequestFailed as error:
        raise LookupFailed(str(error)) from None
    if status == 200:
        return _data(body)
    if status == 404:
        return None
    if status == 403:
        raise LookupFailed(_forbidden_hint())
    message = body.get("message", "") if isinstance(body, dict) else ""
    raise LookupFailed(f"GET configmap/{NAME} in {NAMESPACE}: HTTP {status} {message}".strip())


class ConfigMapRefresher(TimerService):
    """
    Re-read the ConfigMap every L{REFRESH_INTERVAL} seconds and install
    what it says into a L{ClientAuth}.
    """

    def __init__(
        self,
        client: KubeClient,
        clock: Any,
        client_auth: ClientAuth,
        interval: float = REFRESH_INTERVAL,
    ) -> None:
        super().__init__(interval, self.refresh)
        self.clock = clock
        self.client = client
        self.client_auth = client_auth
        self._failing = False

    def refresh(self) -> Deferred[None]:
        """
        Read the ConfigMap once and install its settings.
        """
        return Deferred.fromCoroutine(self._refresh())

    async def _refresh(self) -> None:
        try:
            data: dict[str, str] | None = _data(await self.client.get(CONFIGMAP_PATH))
        except KubeAPIError as error:
            if error.code != 404:
                self._failed(str(error))
                return
            data = None
        except KubeUnavailable as error:
            self._failed(str(error))
            return
        try:
            changed = self.client_auth.set_configmap(data)
        except ClientAuthError as error:
            self._failed(f"configmap/{NAME}: {error}")
            return
        if self._failing:
            log.info("configmap/{name} can be read again", name=NAME)
            self._failing = False
        if changed:
            log.info("client CAs changed: from configmap/{name}", name=NAME)

    def _failed(self, why: str) -> None:
        if not self._failing:
            log.warn(  # noqa: G010 - twisted.logger has no warning()
                "cannot re-read configmap/{name}, keeping the CAs in use: {why}",
                name=NAME,
                why=why,
            )
        self._failing = True
