# -*- test-case-name: tests.test_soak_smoke -*-
"""
The servers a benchmark measures: etcd (unless wardled keeps its objects in
its embedded store), a test PKI and one C{twistd wardled}, all on loopback,
started together and stopped (their files removed) together whatever
happens.  L{bench.soak} and L{bench.watch_fanout} both run on one.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager

import attrs

from bench._http import Endpoint, TlsFiles
from tests.etcdserver import EtcdServer
from tests.harness import ADMIN, TestPKI, WardledProcess


@attrs.frozen
class Stack:
    """
    The running servers and how clients reach wardled.

    @ivar etcd: C{None} with the embedded store.
    @ivar endpoint: wardled, reached over TLS with the admin's client
        certificate.
    """

    etcd: EtcdServer | None
    wardled: WardledProcess
    endpoint: Endpoint


@contextmanager
def running_stack(
    wardled_args: Sequence[str], *, with_etcd: bool, prefix: str
) -> Iterator[Stack]:
    """
    Start etcd (when C{with_etcd}), a PKI and wardled with C{wardled_args}
    in a new temporary directory named C{prefix...}; stop them and remove
    their files on exit.
    """
    work_dir = tempfile.mkdtemp(prefix=prefix)
    with ExitStack() as cleanup:
        cleanup.callback(shutil.rmtree, work_dir, ignore_errors=True)
        etcd = EtcdServer.start() if with_etcd else None
        if etcd is not None:
            cleanup.callback(etcd.stop)
        pki = TestPKI.create(os.path.join(work_dir, "pki"))
        etcd_url = None if etcd is None else etcd.url
        wardled = WardledProcess.start(etcd_url, pki, wardled_args)
        cleanup.callback(shutil.rmtree, wardled.work_dir, ignore_errors=True)
        cleanup.callback(wardled.stop)
        admin = pki.users[ADMIN]
        tls = TlsFiles(pki.ca_file, admin.cert_file, admin.key_file)
        yield Stack(etcd, wardled, Endpoint("127.0.0.1", wardled.port, tls))
