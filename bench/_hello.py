# -*- test-case-name: tests.test_bench_smoke -*-
"""
A bare Klein app over TLS: the floor the benchmark suite measures
wardled's GET against (issue 8: "a bare Klein TLS hello-world does about
8,500 here").

One route, C{GET /hello}, answers a Flunder-sized JSON document
(L{HELLO_DOCUMENT}, C{json.dumps}'d on every request as any JSON API
would) with C{Content-Type: application/json}.  The TLS settings are
wardled's (serving certificate and chain, TLS 1.2 at least, client
certificates verified against a CA bundle; required here, as every
benchmark client presents one) and ALPN offers C{h2} and C{http/1.1}
(the L{Site}'s protocols: HTTP/2 when Twisted's C{http2} extra is
installed).  No access log, no authentication, no storage: what is left
is Twisted's TLS and HTTP, Klein's routing and one small response.

It is built on Twisted and Klein only, never on wardled, so the floor
stays the same whatever wardled's code does.  The suite runs it as its
own process::

    python -m bench._hello --cert server.crt --key server.key \\
        --client-ca ca.crt [--port 0] [--port-file PATH]

It listens on 127.0.0.1, writes the port it got to C{--port-file} once
listening and serves until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from klein import Klein
from OpenSSL import crypto
from twisted.internet.ssl import CertificateOptions, TLSVersion
from twisted.logger import globalLogBeginner, textFileLogObserver
from twisted.web import http
from twisted.web.server import Request, Site

HELLO_PATH = "/hello"
CONTENT_TYPE = b"application/json"

#: What C{GET /hello} answers: shaped like a Flunder as wardled returns it
#: (about 650 bytes), so the floor serialises and sends as much.
HELLO_DOCUMENT: dict[str, Any] = {
    "kind": "Flunder",
    "apiVersion": "wardle.example.com/v1alpha1",
    "metadata": {
        "name": "hello",
        "namespace": "bench-hello",
        "uid": "0b7f4c1e-8d2a-4f57-9a63-2f1d6c0e5b84",
        "resourceVersion": "12345",
        "creationTimestamp": "2025-01-01T00:00:00Z",
        "labels": {"app.kubernetes.io/name": "hello", "shard": "0"},
        "managedFields": [
            {
                "operation": "Update",
                "apiVersion": "wardle.example.com/v1alpha1",
                "time": "2025-01-01T00:00:00Z",
                "fieldsType": "FieldsV1",
                "fieldsV1": {
                    "f:metadata": {
                        "f:labels": {
                            ".": {},
                            "f:app.kubernetes.io/name": {},
                            "f:shard": {},
                        }
                    },
                    "f:spec": {"f:reference": {}, "f:referenceType": {}},
                },
            }
        ],
    },
    "spec": {"reference": "hello, world", "referenceType": "Fischer"},
    "status": {},
}


def hello_body() -> bytes:
    """
    The body of one C{GET /hello} response.
    """
    return json.dumps(HELLO_DOCUMENT, separators=(",", ":")).encode()


def hello_app() -> Klein:
    """
    The Klein app: C{GET /hello} and nothing else.
    """
    app = Klein()

    @app.route(HELLO_PATH, methods=["GET"])
    def hello(request: Request) -> bytes:
        request.setHeader(b"content-type", CONTENT_TYPE)
        return hello_body()

    return app


class QuietSite(Site):
    """
    A L{Site} without an access log (the legacy log it writes to by
    default costs a formatted line per request).
    """

    def log(self, request: http.Request) -> None:
        pass


def _read(path: str) -> bytes:
    with open(path, "rb") as source:
        return source.read()


def tls_options(
    cert_file: str, key_file: str, client_ca_file: str
) -> CertificateOptions:
    """
    wardled's TLS settings for the serving pair in C{cert_file} (with its
    chain) and C{key_file}, requiring a client certificate that chains to
    the CA bundle in C{client_ca_file}.
    """
    chain = x509.load_pem_x509_certificates(_read(cert_file))
    key = serialization.load_pem_private_key(_read(key_file), password=None)
    authorities = x509.load_pem_x509_certificates(_read(client_ca_file))
    # As in wardled.tls: cryptography objects for the pair (pyOpenSSL warns
    # about X509 ones), pyOpenSSL X509 for the store of authorities.
    return CertificateOptions(
        privateKey=key,  # type: ignore[arg-type]
        certificate=chain[0],  # type: ignore[arg-type]
        extraCertChain=list(chain[1:]) or None,  # type: ignore[arg-type]
        verify=True,
        caCerts=[crypto.X509.from_cryptography(each) for each in authorities],
        requireCertificate=True,
        raiseMinimumTo=TLSVersion.TLSv1_2,
    )


def _write_port(path: str, port: int) -> None:
    """
    Write C{port} to C{path} in one step (a reader never sees half of it).
    """
    partial = f"{path}.partial"
    with open(partial, "w", encoding="ascii") as output:
        output.write(f"{port}\n")
    os.replace(partial, path)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench._hello",
        description="A bare Klein TLS hello-world (GET /hello) on 127.0.0.1.",
    )
    add = parser.add_argument
    add("--cert", required=True, help="serving certificate (PEM, chain after it)")
    add("--key", required=True, help="its private key (PEM)")
    add("--client-ca", required=True, help="CA bundle client certificates chain to")
    add("--port", type=int, default=0, help="TCP port (default 0: any free one)")
    add("--port-file", help="write the port listened on here once listening")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """
    Serve until stopped.
    """
    arguments = _parser().parse_args(argv)
    from twisted.internet import reactor

    globalLogBeginner.beginLoggingTo(
        [textFileLogObserver(sys.stderr)], redirectStandardIO=False
    )
    options = tls_options(arguments.cert, arguments.key, arguments.client_ca)
    site = QuietSite(hello_app().resource())
    listening = reactor.listenSSL(  # type: ignore[attr-defined]
        arguments.port, site, options, interface="127.0.0.1"
    )
    if arguments.port_file:
        _write_port(arguments.port_file, listening.getHost().port)
    reactor.run()


if __name__ == "__main__":
    main()
