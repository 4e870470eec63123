# -*- test-case-name: tests.test_reload -*-
"""
Reloading certificates, CA bundles and the policy file without a restart.

An operator rotates the serving certificate or a CA by replacing files and
either waiting (the files are checked every 2 s) or sending SIGHUP
(C{systemctl reload wardled}), which checks them at once.  New TLS
handshakes then use the new material; open connections keep what they were
accepted with.  A file that does not load (half written, wrong key, not
PEM) is logged and ignored: the material in use stays until a good file
replaces it.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from twisted.application.service import Service
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from wardled import tls
from wardled.auth.clientauth import ClientAuth, ClientAuthError
from wardled.config import WardledConfig

POLL_INTERVAL = 2.0

log = Logger()


def file_signature(paths: Sequence[str]) -> object:
    """
    What changes when any of C{paths} is rewritten, replaced or removed:
    modification time, size and inode of each.
    """
    signature: list[object] = []
    for path in paths:
        try:
            status = os.stat(path)
        except OSError as error:
            signature.append(("missing", error.errno))
        else:
            signature.append((status.st_mtime_ns, status.st_size, status.st_ino))
    return tuple(signature)


class IReloadable(Protocol):
    """
    Something read from files that can be re-read.
    """

    def check(self) -> None:
        """
        Re-read the files if they changed; keep the old material (and log
        why) if the new files do not load.
        """


class _WatchedFiles:
    """
    Files whose change calls L{load}; a failing load is logged once per
    change and leaves everything as it was.
    """

    what = "files"

    def __init__(self, paths: Sequence[str]) -> None:
        self.paths = tuple(paths)
        self._signature = file_signature(self.paths)

    def check(self) -> None:
        signature = file_signature(self.paths)
        if signature == self._signature:
            return
        self._signature = signature
        try:
            self.load()
        except (OSError, ValueError) as error:
            log.error(
                "{what} not reloaded, keeping the ones in use: {reason}",
                what=self.what,
                reason=str(error),
            )
            return
        log.info("{what} reloaded from {paths}", what=self.what, paths=", ".join(self.paths))

    def load(self) -> None:
        raise NotImplementedError


class ServingCertificate(_WatchedFiles):
    """
    The serving certificate and key of a L{tls.RotatingServerTLS}.
    """

    what = "serving certificate"

    def __init__(self, cert_file: str, key_file: str, server_tls: tls.RotatingServerTLS) -> None:
        super().__init__((cert_file, key_file))
        self.server_tls = server_tls

    def load(self) -> None:
        self.server_tls.set_pair(tls.ServingPair.load(*self.paths))


class ClientCAFiles(_WatchedFiles):
    """
    The C{--client-ca-file} and C{--requestheader-client-ca-file} bundles
    of a L{ClientAuth}.
    """

    what = "client CA bundles"

    def __init__(
        self,
        config: WardledConfig,
        client_auth: ClientAuth,
        settings_from_flags: Callable[[WardledConfig], Any],
    ) -> None:
        paths = [
            path
            for path in (config.client_ca_file, config.requestheader_client_ca_file)
            if path
        ]
        super().__init__(paths)
        self.config = config
        self.client_auth = client_auth
        self.settings_from_flags = settings_from_flags

    def load(self) -> None:
        try:
            self.client_auth.set_flags(self.settings_from_flags(self.config))
        except ClientAuthError as error:
            raise ValueError(str(error)) from None


class ReloadService(Service):
    """
    Check every reloadable every L{POLL_INTERVAL} seconds, and at once on
    SIGHUP.

    @ivar on_reload: called around a SIGHUP reload as C{on_reload(False)}
        before and C{on_reload(True)} after (systemd's RELOADING=1 /
        READY=1), if given.
    """

    def __init__(
        self,
        reactor: Any,
        reloadables: Sequence[IReloadable],
        interval: float = POLL_INTERVAL,
        handle_sighup: bool = True,
        on_reload: Callable[[bool], None] | None = None,
    ) -> None:
        self.reactor = reactor
        self.reloadables = list(reloadables)
        self.interval = interval
        self.handle_sighup = handle_sighup
        self.on_reload = on_reload
        self._loop: LoopingCall | None = None
        self._previous_handler: Any = None

    def check_all(self) -> None:
        """
        Check every reloadable once.
        """
        for reloadable in self.reloadables:
            reloadable.check()

    def reload_now(self) -> None:
        """
        What SIGHUP does: check everything now.
        """
        log.info("SIGHUP: reloading certificates, CA bundles and policy")
        if self.on_reload is not None:
            self.on_reload(False)
        self.check_all()
        if self.on_reload is not None:
            self.on_reload(True)

    def _sighup(self, signum: int, frame: Any) -> None:
        self.reactor.callFromThread(self.reload_now)

    def startService(self) -> None:
        super().startService()
        loop = LoopingCall(self.check_all)
        loop.clock = self.reactor
        loop.start(self.interval, now=False)
        self._loop = loop
        if self.handle_sighup:
            self._previous_handler = signal.signal(signal.SIGHUP, self._sighup)

    def stopService(self) -> None:
        super().stopService()
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        if self.handle_sighup and self._previous_handler is not None:
            signal.signal(signal.SIGHUP, self._previous_handler)
            self._previous_handler = None
