# -*- test-case-name: tests.test_kubeclient -*-
"""
Tests for L{wardled.kube}: kubeconfig and in-cluster loading (every field
form and every error), the bearer-token file, the watch-stream framing, and
L{KubeClient} and L{Reflector} against a real HTTPS server in this process
that requires a client certificate from a test CA and records what it was
asked.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable
from typing import Any, ClassVar, cast

import attrs
import yaml
from OpenSSL.crypto import X509
from twisted.internet import reactor
from twisted.internet.address import IPv4Address
from twisted.internet.defer import (
    CancelledError,
    Deferred,
    DeferredQueue,
    maybeDeferred,
    succeed,
)
from twisted.internet.interfaces import IListeningPort
from twisted.internet.ssl import CertificateOptions, TLSVersion
from twisted.internet.task import Clock
from twisted.logger import capturedLogs
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

from wardled import __version__, certs
from wardled.kube.client import (
    TOKEN_REREAD_SECONDS,
    KubeAPIError,
    KubeClient,
    KubeUnavailable,
    TokenSource,
    _EventLines,
)
from wardled.kube.kubeconfig import (
    ClusterConfig,
    KubeconfigError,
    in_cluster_available,
    in_cluster_config,
    load_kubeconfig,
)
from wardled.kube.reflector import Reflector, object_key
from wardled.tls import client_certificate_identity

JSON = dict[str, Any]


# -- a test PKI, made once ------------------------------------------------------


@attrs.frozen
class PKI:
    ca: certs.KeyPair
    serving: certs.KeyPair
    client: certs.KeyPair
    named_serving: certs.KeyPair  # only for DNS name kube.test
    other_serving: certs.KeyPair  # from another CA


_pki: list[PKI] = []


def pki() -> PKI:
    if not _pki:
        ca = certs.make_ca("kube-test-ca")
        other = certs.make_ca("someone-else")
        _pki.append(
            PKI(
                ca=ca,
                serving=certs.make_serving_cert(ca, ["127.0.0.1", "localhost"]),
                client=certs.make_client_cert(ca, "wardled", ["wardlers"]),
                named_serving=certs.make_serving_cert(ca, ["kube.test"]),
                other_serving=certs.make_serving_cert(other, ["127.0.0.1"]),
            )
        )
    return _pki[0]


def write_text(path: str, text: str) -> None:
    with open(path, "w") as output:
        output.write(text)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# -- kubeconfig ----------------------------------------------------------------


class KubeconfigTests(SynchronousTestCase):
    """
    L{load_kubeconfig}: every field form and every error message.
    """

    def setUp(self) -> None:
        self.directory = self.mktemp()
        os.makedirs(os.path.join(self.directory, "pki"))
        self.path = os.path.join(self.directory, "kubeconfig")
        self.ca_pem = pki().ca.certificate_pem()
        self.cert_pem = pki().client.certificate_pem(with_chain=True)
        self.key_pem = pki().client.key_pem()
        self.write_file("pki/ca.crt", self.ca_pem)
        self.write_file("pki/client.crt", self.cert_pem)
        self.write_file("pki/client.key", self.key_pem)
        self.write_file("pki/token", b"file-token\n")

    def write_file(self, name: str, data: bytes) -> str:
        path = os.path.join(self.directory, name)
        with open(path, "wb") as output:
            output.write(data)
        return path

    def write(
        self,
        cluster: JSON,
        user: JSON | None = None,
        current: str | None = "main",
        extra_contexts: list[JSON] = [],  # noqa: B006 - never mutated
    ) -> str:
        context: JSON = {"cluster": "kube"}
        if user is not None:
            context["user"] = "admin"
        document: JSON = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "kube", "cluster": cluster}],
            "users": [{"name": "admin", "user": user or {}}],
            "contexts": [{"name": "main", "context": context}, *extra_contexts],
        }
        if current is not None:
            document["current-context"] = current
        self.write_file("kubeconfig", yaml.safe_dump(document).encode())
        return self.path

    def assertError(self, message: str, context: str | None = None) -> None:
        error = self.assertRaises(KubeconfigError, load_kubeconfig, self.path, context)
        self.assertEqual(str(error), f"kubeconfig {self.path}: {message}")

    def test_relative_paths(self) -> None:
        """
        C{certificate-authority}, C{client-certificate}, C{client-key} and
        C{tokenFile} relative to the kubeconfig's directory are read (the
        token file only kept as an absolute path); C{server}'s trailing
        slash goes.
        """
        self.write(
            {
                "server": "https://kube.example:6443/",
                "certificate-authority": "pki/ca.crt",
            },
            {
                "client-certificate": "pki/client.crt",
                "client-key": "pki/client.key",
                "tokenFile": "pki/token",
            },
        )
        config = load_kubeconfig(self.path)
        self.assertEqual(
            config,
            ClusterConfig(
                server="https://kube.example:6443",
                ca_data=self.ca_pem,
                client_cert_data=self.cert_pem,
                client_key_data=self.key_pem,
                token_file=os.path.join(os.path.abspath(self.directory), "pki/token"),
            ),
        )

    def test_absolute_paths_and_relative_kubeconfig(self) -> None:
        """
        Absolute paths are used as they are; a kubeconfig named by a
        relative path resolves its relative paths against its directory,
        not the working directory.
        """
        absolute = os.path.abspath(os.path.join(self.directory, "pki/ca.crt"))
        self.write(
            {"server": "https://a:1", "certificate-authority": absolute},
            {"client-certificate": "pki/client.crt", "client-key": "pki/client.key"},
        )
        relative = os.path.relpath(self.path)
        config = load_kubeconfig(relative)
        self.assertEqual(config.ca_data, self.ca_pem)
        self.assertEqual(config.client_key_data, self.key_pem)

    def test_data_fields_token_insecure_server_name(self) -> None:
        """
        The C{*-data} forms are base64; C{token}, C{insecure-skip-tls-verify}
        and C{tls-server-name} are taken as they are.
        """
        self.write(
            {
                "server": "https://10.0.0.1:443",
                "insecure-skip-tls-verify": True,
                "tls-server-name": "kubernetes.default.svc",
            },
            {
                "client-certificate-data": b64(self.cert_pem),
                "client-key-data": b64(self.key_pem),
                "token": "sekret",
            },
        )
        config = load_kubeconfig(self.path)
        self.assertEqual(
            config,
            ClusterConfig(
                server="https://10.0.0.1:443",
                client_cert_data=self.cert_pem,
                client_key_data=self.key_pem,
                token="sekret",
                insecure_skip_tls_verify=True,
                tls_server_name="kubernetes.default.svc",
            ),
        )

    def test_ca_data(self) -> None:
        self.write(
            {"server": "https://a:1", "certificate-authority-data": b64(self.ca_pem)}
        )
        config = load_kubeconfig(self.path)
        self.assertEqual((config.ca_data, config.token), (self.ca_pem, None))

    def test_explicit_context(self) -> None:
        """
        A context given by name wins over C{current-context}; a context
        without a user has no credentials.
        """
        other = {"name": "bare", "context": {"cluster": "kube"}}
        self.write({"server": "https://a:1"}, {"token": "t"}, extra_contexts=[other])
        self.assertEqual(load_kubeconfig(self.path).token, "t")
        self.assertEqual(
            load_kubeconfig(self.path, "bare"), ClusterConfig(server="https://a:1")
        )

    def test_unreadable_kubeconfig(self) -> None:
        self.assertError("cannot read: No such file or directory")

    def test_not_yaml(self) -> None:
        self.write_file("kubeconfig", b"clusters: [\n  - {name: x\n")
        error = self.assertRaises(KubeconfigError, load_kubeconfig, self.path)
        self.assertTrue(
            str(error).startswith(f"kubeconfig {self.path}: not valid YAML at line ")
        )

    def test_not_a_mapping(self) -> None:
        self.write_file("kubeconfig", b"- 1\n")
        self.assertError("not a kubeconfig (no mapping)")

    def test_no_current_context(self) -> None:
        self.write({"server": "https://a:1"}, current=None)
        self.assertError("no current-context is set and no context was given")

    def test_context_not_found(self) -> None:
        self.write({"server": "https://a:1"})
        self.assertError('context "foo" not found', "foo")

    def test_context_without_cluster(self) -> None:
        broken = {"name": "broken", "context": {"user": "admin"}}
        self.write({"server": "https://a:1"}, extra_contexts=[broken])
        self.assertError('context "broken" names no cluster', "broken")

    def test_cluster_not_found(self) -> None:
        lost = {"name": "lost", "context": {"cluster": "gone"}}
        self.write({"server": "https://a:1"}, extra_contexts=[lost])
        self.assertError('cluster "gone" not found', "lost")

    def test_user_not_found(self) -> None:
        lost = {"name": "lost", "context": {"cluster": "kube", "user": "nobody"}}
        self.write({"server": "https://a:1"}, extra_contexts=[lost])
        self.assertError('user "nobody" not found', "lost")

    def test_section_not_a_list(self) -> None:
        self.write_file("kubeconfig", b"current-context: main\ncontexts: {main: {}}\n")
        self.assertError("contexts is not a list")

    def test_no_server(self) -> None:
        self.write({"certificate-authority": "pki/ca.crt"})
        self.assertError('cluster "kube" has no server')

    def test_server_not_http(self) -> None:
        self.write({"server": "kube.example:6443"})
        self.assertError(
            'cluster "kube" server "kube.example:6443" is not an http(s) URL'
        )

    def test_missing_ca_file(self) -> None:
        self.write({"server": "https://a:1", "certificate-authority": "pki/nope.crt"})
        missing = os.path.join(os.path.abspath(self.directory), "pki/nope.crt")
        self.assertError(
            f'cluster "kube" certificate-authority {missing}: cannot read: '
            "No such file or directory"
        )

    def test_bad_base64(self) -> None:
        self.write(
            {"server": "https://a:1", "certificate-authority-data": "not base64!"}
        )
        self.assertError(
            'cluster "kube" certificate-authority-data is not valid base64'
        )

    def test_bad_base64_user(self) -> None:
        self.write(
            {"server": "https://a:1"},
            {"client-certificate-data": "%%%", "client-key-data": b64(self.key_pem)},
        )
        self.assertError('user "admin" client-certificate-data is not valid base64')

    def test_file_and_data(self) -> None:
        self.write(
            {
                "server": "https://a:1",
                "certificate-authority": "pki/ca.crt",
                "certificate-authority-data": b64(self.ca_pem),
            }
        )
        self.assertError(
            'cluster "kube" sets both certificate-authority and '
            "certificate-authority-data"
        )

    def test_insecure_with_ca(self) -> None:
        self.write(
            {
                "server": "https://a:1",
                "insecure-skip-tls-verify": True,
                "certificate-authority": "pki/ca.crt",
            }
        )
        self.assertError(
            'cluster "kube" sets insecure-skip-tls-verify and a certificate authority'
        )

    def test_certificate_without_key(self) -> None:
        self.write({"server": "https://a:1"}, {"client-certificate": "pki/client.crt"})
        self.assertError('user "admin" has a client-certificate but no client-key')

    def test_key_without_certificate(self) -> None:
        self.write({"server": "https://a:1"}, {"client-key-data": b64(self.key_pem)})
        self.assertError('user "admin" has a client-key but no client-certificate')

    def test_missing_key_file(self) -> None:
        self.write(
            {"server": "https://a:1"},
            {"client-certificate": "pki/client.crt", "client-key": "/nonexistent/k"},
        )
        self.assertError(
            'user "admin" client-key /nonexistent/k: cannot read: '
            "No such file or directory"
        )

    def test_missing_token_file(self) -> None:
        self.write({"server": "https://a:1"}, {"tokenFile": "/nonexistent/token"})
        self.assertError(
            'user "admin" tokenFile /nonexistent/token: cannot read: '
            "No such file or directory"
        )

    def test_unsupported_credentials(self) -> None:
        self.write({"server": "https://a:1"}, {"exec": {"command": "aws"}})
        self.assertError('user "admin" uses exec, which wardled does not support')


class InClusterTests(SynchronousTestCase):
    """
    L{in_cluster_config} and L{in_cluster_available}, by client-go's rules.
    """

    def setUp(self) -> None:
        self.root = self.mktemp()
        os.makedirs(self.root)
        self.ca_pem = pki().ca.certificate_pem()
        for name, data in (("token", b"sa-token"), ("ca.crt", self.ca_pem)):
            with open(os.path.join(self.root, name), "wb") as output:
                output.write(data)

    def test_ipv4(self) -> None:
        environ = {
            "KUBERNETES_SERVICE_HOST": "10.96.0.1",
            "KUBERNETES_SERVICE_PORT": "443",
        }
        self.assertTrue(in_cluster_available(environ))
        self.assertEqual(
            in_cluster_config(environ, self.root),
            ClusterConfig(
                server="https://10.96.0.1:443",
                ca_data=self.ca_pem,
                token_file=os.path.join(self.root, "token"),
            ),
        )

    def test_ipv6(self) -> None:
        environ = {
            "KUBERNETES_SERVICE_HOST": "fd00::1",
            "KUBERNETES_SERVICE_PORT": "6443",
        }
        self.assertEqual(
            in_cluster_config(environ, self.root).server, "https://[fd00::1]:6443"
        )

    def test_missing_environment(self) -> None:
        message = (
            "unable to load in-cluster configuration, KUBERNETES_SERVICE_HOST "
            "and KUBERNETES_SERVICE_PORT must be defined"
        )
        for environ in (
            {},
            {"KUBERNETES_SERVICE_HOST": "10.96.0.1"},
            {"KUBERNETES_SERVICE_PORT": "443"},
        ):
            self.assertFalse(in_cluster_available(environ))
            error = self.assertRaises(
                KubeconfigError, in_cluster_config, environ, self.root
            )
            self.assertEqual(str(error), message)

    def test_missing_ca(self) -> None:
        os.unlink(os.path.join(self.root, "ca.crt"))
        environ = {"KUBERNETES_SERVICE_HOST": "h", "KUBERNETES_SERVICE_PORT": "1"}
        error = self.assertRaises(
            KubeconfigError, in_cluster_config, environ, self.root
        )
        self.assertEqual(
            str(error),
            "unable to load in-cluster configuration: cannot read "
            f"{self.root}/ca.crt: No such file or directory",
        )


# -- pieces of the client that need no server ------------------------------------------


class TokenSourceTests(SynchronousTestCase):
    """
    L{TokenSource} re-reads its file at most once a minute.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.path = self.mktemp()
        self.write("one\n")

    def write(self, token: str) -> None:
        with open(self.path, "w") as output:
            output.write(token)

    def test_fixed_token(self) -> None:
        self.assertEqual(TokenSource(self.clock, "t", None).current(), "t")
        self.assertIsNone(TokenSource(self.clock, None, None).current())

    def test_reread_after_a_minute(self) -> None:
        source = TokenSource(self.clock, "ignored", self.path)
        self.assertEqual(source.current(), "one")
        self.write("two")
        self.clock.advance(TOKEN_REREAD_SECONDS - 1)
        self.assertEqual(source.current(), "one")
        self.clock.advance(1)
        self.assertEqual(source.current(), "two")

    def test_unreadable_keeps_last(self) -> None:
        source = TokenSource(self.clock, None, self.path)
        self.assertEqual(source.current(), "one")
        os.unlink(self.path)
        self.clock.advance(TOKEN_REREAD_SECONDS)
        with capturedLogs() as events:
            self.assertEqual(source.current(), "one")
        self.assertIn("keeping the last token", events[0]["log_format"])

    def test_unreadable_without_token(self) -> None:
        os.unlink(self.path)
        source = TokenSource(self.clock, None, self.path)
        error = self.assertRaises(KubeUnavailable, source.current)
        self.assertEqual(
            str(error), f"cannot read token file {self.path}: No such file or directory"
        )
        self.write("back")
        self.assertEqual(source.current(), "back")


class EventLinesTests(SynchronousTestCase):
    """
    The watch framing: one JSON event per line, cut anywhere.
    """

    EVENTS: ClassVar[list[JSON]] = [
        {"type": "ADDED", "object": {"metadata": {"name": "a"}}},
        {"type": "MODIFIED", "object": {"metadata": {"name": "b", "x": "é\n"}}},
        {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "9"}}},
    ]

    def stream(self) -> bytes:
        return b"".join(json.dumps(e).encode() + b"\n" for e in self.EVENTS)

    def test_byte_by_byte(self) -> None:
        seen: list[JSON] = []
        lines = _EventLines(seen.append)
        for index in range(len(self.stream())):
            lines.feed(self.stream()[index : index + 1])
        lines.finish()
        self.assertEqual(seen, self.EVENTS)

    def test_all_at_once_and_no_final_newline(self) -> None:
        seen: list[JSON] = []
        lines = _EventLines(seen.append)
        lines.feed(self.stream()[:-1])
        self.assertEqual(seen, self.EVENTS[:2])
        lines.finish()
        self.assertEqual(seen, self.EVENTS)

    def test_not_json(self) -> None:
        lines = _EventLines(lambda event: None)
        error = self.assertRaises(KubeUnavailable, lines.feed, b"<html>\n")
        self.assertEqual(
            str(error), "watch stream holds a line that is not JSON: <html>"
        )
        self.assertRaises(KubeUnavailable, lines.feed, b"[1]\n")


# -- a kube-apiserver stand-in over mutual TLS -----------------------------------------


@attrs.frozen
class Seen:
    """
    One request the test server received.
    """

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    user: str | None


Answer = Callable[[Request], bytes | int]


def reply(body: Any, code: int = 200) -> Answer:
    def answer(request: Request) -> bytes:
        request.setResponseCode(code)
        request.setHeader(b"content-type", b"application/json")
        return json.dumps(body).encode()

    return answer


def reply_raw(code: int, body: bytes, content_type: bytes = b"text/plain") -> Answer:
    def answer(request: Request) -> bytes:
        request.setResponseCode(code)
        request.setHeader(b"content-type", content_type)
        return body

    return answer


class FakeKubeAPI(Resource):
    """
    Answers requests from a script, in order; a request with nothing
    scripted is held open and handed to the test through L{held}.
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[Seen] = []
        self.script: list[Answer] = []
        self.held: DeferredQueue[Request] = DeferredQueue()

    def answer(self, *answers: Answer) -> None:
        self.script.extend(answers)

    def render(self, request: Request) -> bytes | int:
        identity = client_certificate_identity(request)
        assert request.content is not None
        self.seen.append(
            Seen(
                method=request.method.decode(),
                path=request.path.decode(),
                query={k.decode(): v[-1].decode() for k, v in request.args.items()},
                headers={
                    k.decode().lower(): v[-1].decode()
                    for k, v in request.requestHeaders.getAllRawHeaders()
                },
                body=request.content.read(),
                user=identity[0] if identity else None,
            )
        )
        if self.script:
            return self.script.pop(0)(request)
        request.setHeader(b"content-type", b"application/json")
        self.held.put(request)
        return NOT_DONE_YET


class TrackingTLSFactory(TLSMemoryBIOFactory):
    """
    A TLS server factory that can close every connection it has and say
    when they are all gone (so no test leaves a socket behind).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._emptied: list[Deferred[None]] = []

    def unregisterProtocol(self, protocol: Any) -> None:
        super().unregisterProtocol(protocol)
        if not self.protocols:
            waiting, self._emptied = self._emptied, []
            for each in waiting:
                each.callback(None)

    def close_all(self) -> Deferred[None]:
        if not self.protocols:
            return succeed(None)
        emptied: Deferred[None] = Deferred()
        self._emptied.append(emptied)
        for protocol in list(self.protocols):
            protocol.transport.abortConnection()
        return emptied


@attrs.define
class Server:
    api: FakeKubeAPI
    factory: TrackingTLSFactory
    port: IListeningPort
    port_number: int

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port_number}"


def server_options(
    serving: certs.KeyPair, client_ca: certs.KeyPair
) -> CertificateOptions:
    return CertificateOptions(
        privateKey=serving.key,  # type: ignore[arg-type]
        certificate=serving.certificate,  # type: ignore[arg-type]
        verify=True,
        caCerts=[X509.from_cryptography(client_ca.certificate)],
        requireCertificate=True,
        raiseMinimumTo=TLSVersion.TLSv1_2,
    )


class RealServerMixin(TestCase):
    """
    Starts HTTPS servers requiring a client certificate and makes clients
    for them; cleans both up.
    """

    def start_server(
        self, serving: certs.KeyPair | None = None, port: int = 0
    ) -> Server:
        api = FakeKubeAPI()
        options = server_options(serving or pki().serving, pki().ca)
        factory = TrackingTLSFactory(options, False, Site(api))
        listening = reactor.listenTCP(port, cast(Any, factory), interface="127.0.0.1")
        address = listening.getHost()
        assert isinstance(address, IPv4Address)
        server = Server(api, factory, listening, address.port)

        async def stop() -> None:
            await maybeDeferred(listening.stopListening)
            await factory.close_all()

        self.addCleanup(stop)
        return server

    def config(self, server: Server | str, **changes: Any) -> ClusterConfig:
        url = server if isinstance(server, str) else server.url
        base = ClusterConfig(
            server=url,
            ca_data=pki().ca.certificate_pem(),
            client_cert_data=pki().client.certificate_pem(),
            client_key_data=pki().client.key_pem(),
            token="tok",
        )
        return attrs.evolve(base, **changes)

    def client(
        self, server: Server | str, timeout: float = 2.0, **changes: Any
    ) -> KubeClient:
        client = KubeClient(reactor, self.config(server, **changes), timeout=timeout)
        self.addCleanup(client.close)
        return client

    async def closed_port_url(self) -> str:
        server = self.start_server()
        await maybeDeferred(server.port.stopListening)
        return server.url


def failure_of(deferred: Deferred[Any]) -> Deferred[BaseException]:
    """
    A Deferred of the exception C{deferred} fails with (and a failure of
    the test if it succeeds).
    """

    def succeeded(result: object) -> BaseException:
        raise AssertionError(f"expected a failure, got {result!r}")

    return deferred.addCallbacks(succeeded, lambda failure: failure.value)


async def expect_failure(work: Any) -> BaseException:
    return await failure_of(Deferred.fromCoroutine(work))


NAMESPACE_LIST: JSON = {
    "kind": "NamespaceList",
    "apiVersion": "v1",
    "metadata": {"resourceVersion": "10"},
    "items": [
        {"metadata": {"name": "a", "resourceVersion": "3"}},
        {"metadata": {"name": "b", "resourceVersion": "4"}},
    ],
}


def status(code: int, reason: str, message: str) -> JSON:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


def line(event: JSON) -> bytes:
    return json.dumps(event).encode() + b"\n"


class EventSink:
    """
    Collects watch events and says when there are enough.
    """

    def __init__(self) -> None:
        self.events: list[JSON] = []
        self._waiting: list[tuple[int, Deferred[None]]] = []

    def __call__(self, event: JSON) -> None:
        self.events.append(event)
        for entry in list(self._waiting):
            if len(self.events) >= entry[0]:
                self._waiting.remove(entry)
                entry[1].callback(None)

    def count(self, number: int) -> Deferred[None]:
        if len(self.events) >= number:
            return succeed(None)
        waiting: Deferred[None] = Deferred()
        self._waiting.append((number, waiting))
        return waiting


class KubeClientTests(RealServerMixin):
    """
    L{KubeClient} against a real mutual-TLS server.
    """

    async def test_get(self) -> None:
        """
        GET sends the query, the bearer token, C{Accept} and
        C{User-Agent}, presents the client certificate, and returns the
        decoded object.
        """
        server = self.start_server()
        server.api.answer(reply(NAMESPACE_LIST))
        result = await self.client(server).get(
            "/api/v1/namespaces", {"labelSelector": "a=b"}
        )
        self.assertEqual(result, NAMESPACE_LIST)
        [seen] = server.api.seen
        self.assertEqual(
            (seen.method, seen.path, seen.query, seen.user, seen.body),
            ("GET", "/api/v1/namespaces", {"labelSelector": "a=b"}, "wardled", b""),
        )
        self.assertEqual(seen.headers["authorization"], "Bearer tok")
        self.assertEqual(seen.headers["accept"], "application/json")
        self.assertEqual(seen.headers["user-agent"], f"wardled/{__version__}")
        self.assertNotIn("content-type", seen.headers)

    async def test_post_and_connection_reuse(self) -> None:
        """
        POST sends JSON with its content type; a second request goes over
        the same pooled connection.
        """
        server = self.start_server()
        review = {"kind": "TokenReview", "spec": {"token": "abc"}}
        answer = {**review, "status": {"authenticated": True}}
        server.api.answer(reply(answer, 201), reply(answer))
        client = self.client(server)
        self.assertEqual(
            await client.post("/apis/authentication.k8s.io/v1/tokenreviews", review),
            answer,
        )
        await client.post("/apis/authentication.k8s.io/v1/tokenreviews", review)
        first = server.api.seen[0]
        self.assertEqual(json.loads(first.body), review)
        self.assertEqual(first.headers["content-type"], "application/json")
        self.assertEqual(first.method, "POST")
        self.assertEqual(len(server.factory.protocols), 1)

    async def test_no_token(self) -> None:
        server = self.start_server()
        server.api.answer(reply({}))
        await self.client(server, token=None).get("/version")
        self.assertNotIn("authorization", server.api.seen[0].headers)

    async def test_status_errors(self) -> None:
        """
        403 and 404 answers become L{KubeAPIError} with the code and the
        C{Status} the server sent.
        """
        server = self.start_server()
        forbidden = status(403, "Forbidden", 'namespaces "x" is forbidden: no')
        not_found = status(404, "NotFound", 'configmaps "c" not found')
        server.api.answer(reply(forbidden, 403), reply(not_found, 404))
        client = self.client(server)
        error = await expect_failure(client.get("/api/v1/namespaces/x"))
        assert isinstance(error, KubeAPIError)
        self.assertEqual(
            (error.code, error.status, error.reason), (403, forbidden, "Forbidden")
        )
        self.assertEqual(
            str(error),
            'kube-apiserver answered 403 Forbidden: namespaces "x" is forbidden: no',
        )
        error = await expect_failure(client.post("/api/v1/configmaps", {}))
        assert isinstance(error, KubeAPIError)
        self.assertEqual((error.code, error.status), (404, not_found))

    async def test_error_not_json(self) -> None:
        """
        An error answer that is not a Status gets a made-up one: its text
        as the message, the reason that goes with the code.
        """
        server = self.start_server()
        server.api.answer(
            reply_raw(503, b"upstream\n  is down\n"),
            reply_raw(502, b""),
            reply({"kind": "Other"}, 500),
        )
        client = self.client(server)
        error = await expect_failure(client.get("/x"))
        assert isinstance(error, KubeAPIError)
        self.assertEqual(
            error.status, status(503, "ServiceUnavailable", "upstream is down")
        )
        error = await expect_failure(client.get("/x"))
        assert isinstance(error, KubeAPIError)
        self.assertEqual(
            error.status,
            status(
                502,
                "Unknown",
                "the server responded with the status code 502 but did not "
                "return more information",
            ),
        )
        error = await expect_failure(client.get("/x"))
        assert isinstance(error, KubeAPIError)
        self.assertEqual(error.status["message"], '{"kind": "Other"}')

    async def test_success_not_json(self) -> None:
        server = self.start_server()
        server.api.answer(reply_raw(200, b"ok"), reply([1, 2]))
        client = self.client(server)
        for _ in range(2):
            error = await expect_failure(client.get("/healthz"))
            self.assertIsInstance(error, KubeUnavailable)
            self.assertEqual(
                str(error),
                f"GET {server.url}/healthz: answered 200 with a body that is "
                "not a JSON object",
            )

    async def test_connection_refused(self) -> None:
        url = await self.closed_port_url()
        error = await expect_failure(self.client(url).get("/api"))
        self.assertIsInstance(error, KubeUnavailable)
        self.assertEqual(str(error), f"GET {url}/api: connection refused")

    async def test_wrong_ca(self) -> None:
        """
        A server whose certificate another CA signed is refused.
        """
        server = self.start_server(pki().other_serving)
        error = await expect_failure(self.client(server).get("/api"))
        self.assertIsInstance(error, KubeUnavailable)
        self.assertIn("TLS failed: certificate verify failed", str(error))
        self.assertEqual(server.api.seen, [])

    async def test_insecure_skip_verify(self) -> None:
        """
        With C{insecure_skip_tls_verify} the same server is accepted, and
        the client certificate is still presented.
        """
        server = self.start_server(pki().other_serving)
        server.api.answer(reply({"ok": True}))
        client = self.client(server, ca_data=None, insecure_skip_tls_verify=True)
        self.assertEqual(await client.get("/api"), {"ok": True})
        self.assertEqual(server.api.seen[0].user, "wardled")

    async def test_tls_server_name(self) -> None:
        """
        A certificate for C{kube.test} only does not match 127.0.0.1, but
        does when C{tls_server_name} says C{kube.test}.
        """
        server = self.start_server(pki().named_serving)
        error = await expect_failure(self.client(server).get("/api"))
        self.assertIsInstance(error, KubeUnavailable)
        self.assertIn("TLS failed", str(error))
        server.api.answer(reply({"ok": True}))
        client = self.client(server, tls_server_name="kube.test")
        self.assertEqual(await client.get("/api"), {"ok": True})

    async def test_client_certificate_required(self) -> None:
        server = self.start_server()
        client = self.client(server, client_cert_data=None, client_key_data=None)
        error = await expect_failure(client.get("/api"))
        self.assertIsInstance(error, KubeUnavailable)
        self.assertEqual(server.api.seen, [])

    async def test_timeout(self) -> None:
        """
        A server that never answers makes the request fail after the
        timeout, and the connection is closed.
        """
        server = self.start_server()
        client = self.client(server, timeout=0.3)
        started = reactor.seconds()
        failing = Deferred.fromCoroutine(client.get("/api/v1/namespaces/slow"))
        held = await server.api.held.get()
        error = await failure_of(failing)
        self.assertIsInstance(error, KubeUnavailable)
        self.assertEqual(
            str(error), f"GET {server.url}/api/v1/namespaces/slow timed out after 0.3s"
        )
        self.assertGreaterEqual(reactor.seconds() - started, 0.29)
        await failure_of(held.notifyFinish())

    async def test_token_file(self) -> None:
        """
        The token comes from the file, read once and kept for a minute
        (L{TokenSourceTests} covers the re-reading).
        """
        path = self.mktemp()
        write_text(path, "from-file\n")
        server = self.start_server()
        server.api.answer(reply({}), reply({}))
        client = self.client(server, token="fixed", token_file=path)
        await client.get("/a")
        write_text(path, "rotated\n")
        await client.get("/b")
        self.assertEqual(
            [seen.headers["authorization"] for seen in server.api.seen],
            ["Bearer from-file", "Bearer from-file"],
        )

    async def test_unreadable_token_file(self) -> None:
        server = self.start_server()
        missing = self.mktemp()
        client = self.client(server, token=None, token_file=missing)
        error = await expect_failure(client.get("/a"))
        self.assertEqual(
            str(error), f"cannot read token file {missing}: No such file or directory"
        )
        self.assertEqual(server.api.seen, [])


class WatchTests(RealServerMixin):
    """
    L{KubeClient.watch} against a real mutual-TLS server.
    """

    ADDED: ClassVar[JSON] = {"type": "ADDED", "object": {"metadata": {"name": "a"}}}
    MODIFIED: ClassVar[JSON] = {
        "type": "MODIFIED",
        "object": {"metadata": {"name": "b"}},
    }
    DELETED: ClassVar[JSON] = {"type": "DELETED", "object": {"metadata": {"name": "a"}}}

    async def open_watch(
        self, params: dict[str, str] | None = None
    ) -> tuple[Server, Deferred[None], Request, EventSink]:
        server = self.start_server()
        sink = EventSink()
        watching = self.client(server).watch(
            "/api/v1/namespaces", params or {"resourceVersion": "7"}, sink
        )
        held = await server.api.held.get()
        return server, watching, held, sink

    async def test_events_split_across_and_within_chunks(self) -> None:
        """
        Events cut across writes and several in one write all arrive, in
        order; the Deferred fires when the server ends the stream.
        """
        server, watching, held, sink = await self.open_watch(
            {"resourceVersion": "7", "allowWatchBookmarks": "true"}
        )
        self.assertEqual(
            server.api.seen[0].query,
            {"resourceVersion": "7", "allowWatchBookmarks": "true", "watch": "1"},
        )
        second = line(self.MODIFIED)
        held.write(line(self.ADDED) + second[:10])
        await sink.count(1)
        self.assertEqual(sink.events, [self.ADDED])
        held.write(second[10:] + line(self.DELETED))
        await sink.count(3)
        self.assertEqual(sink.events, [self.ADDED, self.MODIFIED, self.DELETED])
        self.assertNoResult(watching)
        ended: list[object] = []
        held.finish()
        await watching.addCallback(ended.append)
        self.assertEqual(ended, [None])

    async def test_error_answer(self) -> None:
        server = self.start_server()
        expired = status(410, "Expired", "too old resource version: 1 (5)")
        server.api.answer(reply(expired, 410))
        error = await failure_of(
            self.client(server).watch("/api/v1/namespaces", {}, EventSink())
        )
        assert isinstance(error, KubeAPIError)
        self.assertEqual((error.code, error.status), (410, expired))

    async def test_cancel_closes_connection(self) -> None:
        _, watching, held, sink = await self.open_watch()
        held.write(line(self.ADDED))
        await sink.count(1)
        closed = held.notifyFinish()
        watching.cancel()
        error = await failure_of(watching)
        self.assertIsInstance(error, CancelledError)
        await failure_of(closed)

    async def test_dropped_stream(self) -> None:
        server, watching, held, sink = await self.open_watch()
        held.write(line(self.ADDED))
        await sink.count(1)
        await server.factory.close_all()
        error = await failure_of(watching)
        self.assertIsInstance(error, KubeUnavailable)
        self.assertTrue(
            str(error).startswith(f"watch {server.url}/api/v1/namespaces: ")
        )

    async def test_not_json(self) -> None:
        _, watching, held, _ = await self.open_watch()
        closed = held.notifyFinish()
        held.write(b"this is not json\n")
        error = await failure_of(watching)
        self.assertEqual(
            str(error), "watch stream holds a line that is not JSON: this is not json"
        )
        await failure_of(closed)

    async def test_callback_raises(self) -> None:
        """
        What C{on_event} raises ends the watch with that exception.
        """
        server = self.start_server()

        class Stop(Exception):
            pass

        def refuse(event: JSON) -> None:
            raise Stop(event["type"])

        watching = self.client(server).watch("/w", {}, refuse)
        held = await server.api.held.get()
        held.write(line(self.ADDED))
        error = await failure_of(watching)
        self.assertIsInstance(error, Stop)
        self.assertEqual(str(error), "ADDED")

    async def test_headers_timeout(self) -> None:
        """
        The response headers are subject to the timeout; the body is not.
        """
        server = self.start_server()
        client = self.client(server, timeout=0.3)
        silent = client.watch("/silent", {}, EventSink())
        sink = EventSink()
        streaming = client.watch("/streaming", {}, sink)
        first = await server.api.held.get()
        second = await server.api.held.get()
        held = {first.path: first, second.path: second}
        held[b"/streaming"].write(line(self.ADDED))
        error = await failure_of(silent)
        self.assertEqual(str(error), f"watch {server.url}/silent timed out after 0.3s")
        await sink.count(1)
        self.assertNoResult(streaming)
        held[b"/streaming"].finish()
        await streaming


# -- the reflector ----------------------------------------------------------------


class ObservedClient(KubeClient):
    """
    A real L{KubeClient} that also reports each finished GET and watch in
    L{finished}, one reactor turn later (after the reflector has handled
    the result), so a test can wait for the reflector's attempts.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.finished: DeferredQueue[str] = DeferredQueue()

    def _report(self, what: str) -> None:
        reactor.callLater(0, self.finished.put, what)

    async def get(self, path: str, params: Any = None) -> JSON:
        try:
            result = await super().get(path, params)
        except Exception as error:
            self._report(f"get failed: {error}")
            raise
        self._report("get ok")
        return result

    def watch(self, path: str, params: Any, on_event: Any) -> Deferred[None]:
        def report(result: Any) -> Any:
            self._report("watch ended")
            return result

        return super().watch(path, params, on_event).addBoth(report)


class ReflectorTests(RealServerMixin):
    """
    L{Reflector} over a real mutual-TLS server.
    """

    def reflector(
        self, client: KubeClient, clock: Any = reactor, **kwargs: Any
    ) -> Reflector:
        reflector = Reflector(clock, client, "/api/v1/namespaces", **kwargs)
        self.addCleanup(reflector.stopService)
        return reflector

    async def test_list_then_watch(self) -> None:
        """
        The LIST fills C{objects}; the WATCH starts from its
        resourceVersion and its events update C{objects}; when the server
        ends the watch the reflector watches again from the last
        resourceVersion it saw (a bookmark's included).
        """
        server = self.start_server()
        server.api.answer(reply(NAMESPACE_LIST))
        reflector = self.reflector(self.client(server))
        waiting = reflector.wait_synced()
        self.assertFalse(reflector.synced)
        reflector.startService()
        await waiting
        self.assertTrue(reflector.synced)
        self.assertEqual(
            dict(reflector.objects),
            {"a": NAMESPACE_LIST["items"][0], "b": NAMESPACE_LIST["items"][1]},
        )
        watch = await server.api.held.get()
        self.assertEqual(
            server.api.seen[1].query,
            {
                "resourceVersion": "10",
                "allowWatchBookmarks": "true",
                "timeoutSeconds": "480",
                "watch": "1",
            },
        )
        c = {"metadata": {"name": "c", "resourceVersion": "11"}}
        a = {"metadata": {"name": "a", "resourceVersion": "12"}, "spec": {}}
        b = {"metadata": {"name": "b", "resourceVersion": "13"}}
        for kind, item in (("ADDED", c), ("MODIFIED", a), ("DELETED", b)):
            watch.write(line({"type": kind, "object": item}))
        bookmark = {"metadata": {"resourceVersion": "15"}}
        watch.write(line({"type": "BOOKMARK", "object": bookmark}))
        watch.finish()
        await server.api.held.get()
        self.assertEqual(server.api.seen[2].query["resourceVersion"], "15")
        self.assertEqual(dict(reflector.objects), {"a": a, "c": c})
        self.assertEqual(reflector.resource_version, "15")
        self.successResultOf(reflector.wait_synced())

    async def test_expired_relists(self) -> None:
        """
        An ERROR 410 event makes the reflector LIST again at once and
        replace C{objects}, then watch from the new list.
        """
        server = self.start_server()
        server.api.answer(reply(NAMESPACE_LIST))
        reflector = self.reflector(self.client(server))
        reflector.startService()
        watch = await server.api.held.get()
        fresh = {
            "metadata": {"resourceVersion": "40"},
            "items": [{"metadata": {"name": "x"}}],
        }
        server.api.answer(reply(fresh))
        expired = status(410, "Expired", "too old resource version: 10 (30)")
        watch.write(line({"type": "ERROR", "object": expired}))
        await server.api.held.get()
        self.assertEqual(
            [
                (seen.path, seen.query.get("watch"), seen.query.get("resourceVersion"))
                for seen in server.api.seen
            ],
            [
                ("/api/v1/namespaces", None, None),
                ("/api/v1/namespaces", "1", "10"),
                ("/api/v1/namespaces", None, None),
                ("/api/v1/namespaces", "1", "40"),
            ],
        )
        self.assertEqual(list(reflector.objects), ["x"])
        self.assertIsNone(reflector.last_error)

    async def test_server_down_backs_off_and_recovers(self) -> None:
        """
        While the server is down the reflector retries with a backoff
        doubling up to the maximum (on its clock), logs the failure once,
        and when the server is back it lists, syncs and watches.
        """
        server = self.start_server()
        port = server.port_number
        await maybeDeferred(server.port.stopListening)
        clock = Clock()
        client = ObservedClient(reactor, self.config(server), timeout=2.0)
        self.addCleanup(client.close)
        reflector = self.reflector(client, clock, resync_backoff=1.0, max_backoff=1.5)
        with capturedLogs() as events:
            reflector.startService()
            delays = []
            for attempt in range(2):
                self.assertTrue((await client.finished.get()).startswith("get failed"))
                [pending] = clock.getDelayedCalls()
                delays.append(pending.getTime() - clock.seconds())
                if attempt == 0:
                    clock.advance(delays[-1])
        self.assertEqual(delays, [1.0, 1.5])
        self.assertFalse(reflector.synced)
        assert reflector.last_error is not None
        self.assertIn("connection refused", reflector.last_error)
        errors = [e for e in events if e["log_namespace"].endswith("Reflector")]
        self.assertEqual(len(errors), 1)
        self.assertIn("retrying with backoff", errors[0]["log_format"])

        back = self.start_server(port=port)
        back.api.answer(reply(NAMESPACE_LIST))
        clock.advance(1.5)
        self.assertEqual(await client.finished.get(), "get ok")
        await reflector.wait_synced()
        await back.api.held.get()
        self.assertEqual(sorted(reflector.objects), ["a", "b"])
        self.assertIsNone(reflector.last_error)
        self.assertEqual(clock.getDelayedCalls(), [])

    async def test_stop_cancels_everything(self) -> None:
        """
        Stopping cancels the watch (closing its connection) and a pending
        retry, leaving nothing on the clock.
        """
        server = self.start_server()
        server.api.answer(reply(NAMESPACE_LIST))
        clock = Clock()
        reflector = self.reflector(self.client(server), clock)
        reflector.startService()
        watch = await server.api.held.get()
        closed = watch.notifyFinish()
        reflector.stopService()
        await failure_of(closed)
        self.assertEqual(clock.getDelayedCalls(), [])

        url = await self.closed_port_url()
        client = ObservedClient(reactor, self.config(url))
        self.addCleanup(client.close)
        failing = self.reflector(client, clock)
        failing.startService()
        await client.finished.get()
        self.assertEqual(len(clock.getDelayedCalls()), 1)
        failing.stopService()
        self.assertEqual(clock.getDelayedCalls(), [])

    async def test_watch_ends_at_once_backs_off(self) -> None:
        """
        A watch closed at once without any event is a failure: the
        reflector backs off and lists again instead of spinning.
        """
        server = self.start_server()
        server.api.answer(reply(NAMESPACE_LIST), reply_raw(200, b""))
        clock = Clock()
        client = ObservedClient(reactor, self.config(server))
        self.addCleanup(client.close)
        reflector = self.reflector(client, clock, resync_backoff=0.5)
        with capturedLogs():
            reflector.startService()
            self.assertEqual(await client.finished.get(), "get ok")
            self.assertEqual(await client.finished.get(), "watch ended")
        self.assertEqual(len(server.api.seen), 2)
        [retry] = clock.getDelayedCalls()
        self.assertEqual(retry.getTime(), 0.5)
        assert reflector.last_error is not None
        self.assertIn("ended at once", reflector.last_error)
        server.api.answer(reply(NAMESPACE_LIST))
        clock.advance(0.5)
        self.assertEqual(await client.finished.get(), "get ok")
        await server.api.held.get()

    def test_object_key(self) -> None:
        self.assertEqual(object_key({"metadata": {"name": "n"}}), "n")
        self.assertEqual(
            object_key({"metadata": {"name": "n", "namespace": "s"}}), "s/n"
        )


class WaitSyncedTests(SynchronousTestCase):
    """
    L{Reflector.wait_synced} waiters can be cancelled.
    """

    def test_cancel_waiter(self) -> None:
        client = KubeClient(Clock(), ClusterConfig(server="https://unused:1"))
        reflector = Reflector(Clock(), client, "/api/v1/namespaces")
        waiter = reflector.wait_synced()
        waiter.cancel()
        self.failureResultOf(waiter, CancelledError)
        self.assertEqual(reflector._waiters, [])
