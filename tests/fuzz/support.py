# -*- test-case-name: tests.fuzz.test_hypothesis_fuzz,tests.fuzz.test_openapi_fuzz -*-
"""
What every fuzz test needs: how many examples to run, a client that sends
anything (through C{requests}, or byte for byte over TLS), and the checks
each answer must pass.

The checks are the fuzzing contract: no 5xx (except the 504 Kubernetes
itself answers for a C{resourceVersion} from the future), every 4xx/5xx
body a C{Status} whose C{code} is the HTTP status, no request left hanging,
and no traceback in the server's log.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import ssl
import time
import urllib.parse
from collections.abc import Mapping
from typing import Any

import attrs
import requests
import yaml
from hypothesis import HealthCheck, reject, settings

from tests.harness import ADMIN, WardledProcess

#: Examples per property (per operation for the OpenAPI tests).
FUZZ_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "") or "8")
#: Set (to anything but C{0}) for random runs; unset runs are derandomized.
FUZZ_RANDOM = os.environ.get("FUZZ_RANDOM", "0") not in ("", "0")

#: Seconds to wait for an answer before calling the request hung.  The
#: longest legitimate wait is Kubernetes' 3 s for a future resourceVersion.
ANSWER_TIMEOUT = 20.0

#: The one 5xx Kubernetes answers to a well-formed request: a
#: C{resourceVersion} newer than the store's (after waiting up to 3 s).
TOO_LARGE_RESOURCE_VERSION = "Timeout: Too large resource version"

#: The one error that is not a C{Status}: an unknown health check
#: (C{/readyz/nope}) gets Go's C{http.NotFound} text, as the reference's
#: health mux answers it.
HEALTH_PREFIXES = ("/healthz/", "/livez/", "/readyz/")
GO_NOT_FOUND = b"404 page not found\n"

_QUIET = [
    HealthCheck.too_slow,
    HealthCheck.filter_too_much,
    HealthCheck.data_too_large,
    HealthCheck.large_base_example,
    HealthCheck.function_scoped_fixture,
]


def fuzz_settings(scale: float = 1.0) -> settings:
    """
    Hypothesis settings for a fuzz property: C{FUZZ_EXAMPLES * scale}
    examples, no deadline (a request takes what it takes), derandomized
    unless C{FUZZ_RANDOM} is set (then failures go to the example database
    so that a rerun replays them).
    """
    options: dict[str, Any] = {
        "max_examples": max(1, round(FUZZ_EXAMPLES * scale)),
        "deadline": None,
        "suppress_health_check": _QUIET,
        "derandomize": not FUZZ_RANDOM,
        "print_blob": True,
    }
    if not FUZZ_RANDOM:
        options["database"] = None
    return settings(**options)


GROUP = "/apis/wardle.example.com"


def flunders(version: str, namespace: str | None, name: str = "") -> str:
    """
    The Flunders collection (all namespaces when C{namespace} is C{None}),
    or one Flunder's path with C{name} percent-encoded.
    """
    path = f"{GROUP}/{version}"
    path += f"/namespaces/{namespace}/flunders" if namespace is not None else "/flunders"
    return path + (f"/{urllib.parse.quote(name, safe='')}" if name else "")


@attrs.frozen
class Reply:
    """
    One answer, read whole (a watch's body is not read: see L{FuzzClient}).

    @ivar request: C{"METHOD url"} plus a short view of the body sent, for
        failure messages.
    @ivar status: the HTTP status.
    @ivar headers: lower-cased header names to values.
    @ivar body: the body bytes.
    @ivar seconds: how long the answer took.
    """

    request: str
    status: int
    headers: Mapping[str, str]
    body: bytes
    seconds: float
    method: str = "GET"
    path: str = "/"

    @property
    def content_type(self) -> str:
        """
        The C{Content-Type}, lower-cased, or C{""}.
        """
        return self.headers.get("content-type", "").lower()

    def status_object(self) -> Any:
        """
        The body decoded as its C{Content-Type} says (JSON or YAML), or
        C{None} when it is neither.
        """
        try:
            if "yaml" in self.content_type:
                return yaml.safe_load(self.body)
            if "json" in self.content_type:
                return json.loads(self.body)
        except (ValueError, yaml.YAMLError):
            return None
        return None


def contract_violations(reply: Reply) -> list[str]:
    """
    How C{reply} breaks the fuzzing contract (empty when it does not).
    """
    problems: list[str] = []
    status = reply.status_object() if reply.status >= 400 else None
    if reply.status >= 500 and not _is_future_resource_version(reply.status, status):
        problems.append(f"server error {reply.status}")
    if reply.status >= 400 and reply.method != "HEAD" and not _is_health_not_found(reply):
        if not isinstance(status, dict) or status.get("kind") != "Status":
            problems.append(f"error body is not a Status ({reply.content_type!r})")
        elif status.get("code") != reply.status:
            problems.append(f"Status code {status.get('code')!r} is not {reply.status}")
    return problems


def _is_future_resource_version(code: int, status: Any) -> bool:
    return (
        code == 504
        and isinstance(status, dict)
        and status.get("reason") == "Timeout"
        and str(status.get("message", "")).startswith(TOO_LARGE_RESOURCE_VERSION)
    )


def _is_health_not_found(reply: Reply) -> bool:
    return (
        reply.status == 404
        and reply.path.startswith(HEALTH_PREFIXES)
        and reply.body == GO_NOT_FOUND
    )


def check(reply: Reply) -> Reply:
    """
    Fail the example unless C{reply} keeps the fuzzing contract.

    @return: C{reply}, for chaining.
    """
    problems = contract_violations(reply)
    assert not problems, (
        f"{reply.request} -> {reply.status}: {'; '.join(problems)}\n"
        f"body: {reply.body[:600]!r}"
    )
    return reply


def is_watch(method: str, url: str) -> bool:
    """
    Whether the server takes C{method url} for a watch (a streamed answer),
    by the rule of L{wardled.api.filters}: C{watch=true} or C{watch=1}, or
    the legacy C{/watch/} path.
    """
    parsed = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qs(parsed.query, keep_blank_values=True)
    values = [value.lower() for value in query.get("watch", [])]
    segments = parsed.path.split("/")
    legacy = len(segments) > 4 and segments[4] == "watch"
    return method.upper() in ("GET", "HEAD") and (legacy or bool(set(values) & {"true", "1"}))


def _describe(method: str, url: str, body: Any) -> str:
    shown = "" if body in (None, b"", "") else f" body={str(body)[:200]!r}"
    return f"{method} {url[:300]}{shown}"


class FuzzClient:
    """
    Sends generated requests to one server as the admin user.

    A watch that is accepted (200) is closed once its headers arrive: its
    stream would never end.  Anything else is read whole, within
    L{ANSWER_TIMEOUT}; a connection the server drops or a request it never
    answers fails the test.
    """

    def __init__(self, server: WardledProcess, user: str = ADMIN) -> None:
        credentials = server.pki.users[user]
        self.server = server
        self.base_url = server.url
        self.session = requests.Session()
        # REQUESTS_CA_BUNDLE would otherwise override verify.
        self.session.trust_env = False
        self.session.verify = server.pki.ca_file
        self.session.cert = (credentials.cert_file, credentials.key_file)
        self._log_mark = len(server.output())

    def send(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        body: bytes | str | None = None,
    ) -> Reply:
        """
        Send C{method path} with C{body} sent as is.
        """
        return self.send_prepared(
            {
                "method": method,
                "url": self.base_url + path,
                "params": dict(params or {}),
                "headers": dict(headers or {}),
                "data": body,
            }
        )

    def send_json(
        self, method: str, path: str, document: Any, content_type: str = "application/json",
        params: Mapping[str, Any] | None = None,
    ) -> Reply:
        """
        Send C{document} as JSON (non-finite floats as Python writes them:
        C{NaN}, C{Infinity}, which is not JSON: also worth sending).
        """
        return self.send(
            method, path, params=params, headers={"Content-Type": content_type},
            body=json.dumps(document),
        )

    def send_prepared(self, kwargs: Mapping[str, Any]) -> Reply:
        """
        Send a request given as C{requests} keyword arguments (what
        schemathesis' C{Case.as_transport_kwargs} returns).  One C{requests}
        cannot even build (a header with a newline) is rejected as an
        example, not counted as a failure.
        """
        started = time.monotonic()
        try:
            prepared = self.session.prepare_request(
                requests.Request(
                    **{k: v for k, v in kwargs.items() if k not in ("timeout", "verify", "cert")}
                )
            )
        except (requests.exceptions.InvalidURL, requests.exceptions.InvalidHeader,
                UnicodeError, ValueError, TypeError):
            reject()
        if any("\x00" in str(value) for value in prepared.headers.values()):
            # Refused by Twisted's HTTP parser with a bare 400 before wardled
            # sees it, as Go's net/http refuses it: not the server's to answer.
            reject()
        description = _describe(str(prepared.method), str(prepared.url), prepared.body)
        try:
            # send() takes verify and cert from the session.
            response = self.session.send(
                prepared, timeout=(5.0, ANSWER_TIMEOUT), allow_redirects=False, stream=True
            )
        except (requests.exceptions.InvalidHeader, requests.exceptions.InvalidURL,
                UnicodeError):
            reject()
        except requests.exceptions.RequestException as error:
            raise AssertionError(f"{description}: no answer: {error!r}") from error
        return self._read(response, description, started)

    def _read(self, response: requests.Response, description: str, started: float) -> Reply:
        method = str(response.request.method)
        headers = {name.lower(): value for name, value in response.headers.items()}
        try:
            if response.status_code == 200 and is_watch(method, str(response.request.url)):
                body = b""
            else:
                body = response.content
        except requests.exceptions.RequestException as error:
            raise AssertionError(f"{description}: body never finished: {error!r}") from error
        finally:
            response.close()
        return Reply(
            description, response.status_code, headers, body,
            time.monotonic() - started, method,
            urllib.parse.urlsplit(str(response.request.url)).path,
        )

    def new_log_lines(self) -> str:
        """
        What the server logged since the last call (or since this client
        was made).
        """
        output = self.server.output()
        fresh, self._log_mark = output[self._log_mark:], len(output)
        return fresh

    def assert_healthy(self) -> None:
        """
        The server is running, C{/readyz} answers 200, and it logged no
        traceback since the last check.
        """
        assert self.server.running, f"wardled exited:\n{self.server.output()[-3000:]}"
        ready = self.send("GET", "/readyz")
        assert ready.status == 200, f"/readyz: {ready.status} {ready.body!r}"
        fresh = self.new_log_lines()
        assert "Traceback" not in fresh, f"the server logged a traceback:\n{fresh[-6000:]}"

    def close(self) -> None:
        """
        Close pooled connections.
        """
        self.session.close()


def raw_request(
    server: WardledProcess,
    request_line: bytes,
    headers: Mapping[str, str] | None = None,
    body: bytes = b"",
    user: str = ADMIN,
) -> Reply:
    """
    Send C{request_line} (e.g. C{b"GET /a%ff HTTP/1.1"}) byte for byte over
    a new TLS connection, with C{Host}, C{Content-Length} and C{Connection:
    close} added: for targets no HTTP library would send as they are.
    """
    context = server.pki.ssl_context(user)
    lines = [request_line, b"Host: 127.0.0.1", f"Content-Length: {len(body)}".encode(),
             b"Connection: close"]
    lines += [f"{name}: {value}".encode("latin-1") for name, value in (headers or {}).items()]
    payload = b"\r\n".join(lines) + b"\r\n\r\n" + body
    started = time.monotonic()
    description = f"raw {request_line[:300]!r}"
    with (
        socket.create_connection(("127.0.0.1", server.port), timeout=ANSWER_TIMEOUT) as plain,
        context.wrap_socket(plain, server_hostname="127.0.0.1") as tls,
    ):
        tls.sendall(payload)
        response = http.client.HTTPResponse(tls)
        try:
            response.begin()
            content = response.read()
        except (OSError, http.client.HTTPException, ssl.SSLError) as error:
            raise AssertionError(f"{description}: no answer: {error!r}") from error
        headers_read = {name.lower(): value for name, value in response.getheaders()}
    method, target = request_line.decode("latin-1").split(" ")[:2]
    return Reply(
        description, response.status, headers_read, content, time.monotonic() - started, method,
        target.partition("?")[0],
    )
