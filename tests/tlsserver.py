# -*- test-case-name: tests.test_tls -*-
"""
A tiny HTTPS server built with L{wardled.tls}, run as a subprocess by the
TLS tests (C{python -m tests.tlsserver ...}).

Every path answers C{GET} with JSON saying who the client certificate says
the caller is and which HTTP version carried the request, so the tests can
check client-certificate authentication over HTTP/1.1 and HTTP/2 with real
clients (curl, kubectl, Python's ssl) without the rest of wardled.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from twisted.internet import reactor
from twisted.logger import globalLogBeginner, textFileLogObserver
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from wardled.config import WardledConfig
from wardled.tls import client_certificate_identity, tls_endpoint_service


class WhoAmI(Resource):
    """
    C{{"user": ..., "groups": [...], "protocol": "HTTP/1.1" | "HTTP/2"}};
    C{user} and C{groups} are C{null} without a client certificate.
    """

    isLeaf = True

    def render_GET(self, request: Request) -> bytes:
        identity = client_certificate_identity(request)
        user, groups = identity if identity is not None else (None, None)
        body = {
            "user": user,
            "groups": list(groups) if groups is not None else None,
            "protocol": (request.clientproto or b"").decode("ascii"),
        }
        request.setHeader(b"content-type", b"application/json")
        return json.dumps(body).encode("utf-8") + b"\n"


def _config(arguments: argparse.Namespace) -> WardledConfig:
    return WardledConfig(
        secure_port=arguments.port,
        bind_address="127.0.0.1",
        tls_cert_file=arguments.cert,
        tls_private_key_file=arguments.key,
        client_ca_file=arguments.client_ca,
        cert_dir=arguments.cert_dir,
        http2=not arguments.no_http2,
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="tlsserver")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cert")
    parser.add_argument("--key")
    parser.add_argument("--client-ca")
    parser.add_argument("--cert-dir", default="certificates")
    parser.add_argument("--no-http2", action="store_true")
    arguments = parser.parse_args(argv)
    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stdout)])
    service = tls_endpoint_service(reactor, _config(arguments), Site(WhoAmI()))
    service.privilegedStartService()
    service.startService()
    print(f"tlsserver listening on 127.0.0.1:{arguments.port}", flush=True)
    reactor.run()


if __name__ == "__main__":
    main()
