# -*- test-case-name: tests.fuzz.test_support -*-
"""
The fuzzing contract itself (L{tests.fuzz.support.contract_violations}):
it must flag what it is there to catch, and let through only the answers
Kubernetes gives too.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from tests.fuzz.support import Reply, contract_violations, is_watch


def reply(code: int, body: Any, content_type: str = "application/json",
          method: str = "GET", path: str = "/apis") -> Reply:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Reply(f"{method} {path}", code, {"content-type": content_type}, data, 0.0, method,
                 path)


def status(code: int, reason: str = "BadRequest", message: str = "no") -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason,
            "message": message, "code": code}


class ContractTests(SynchronousTestCase):
    def test_success_and_status_errors_pass(self) -> None:
        self.assertEqual(contract_violations(reply(200, {"kind": "FlunderList"})), [])
        self.assertEqual(contract_violations(reply(422, status(422))), [])
        yaml_status = b"kind: Status\ncode: 406\nreason: NotAcceptable\n"
        self.assertEqual(contract_violations(reply(406, yaml_status, "application/yaml")), [])

    def test_server_errors_fail(self) -> None:
        self.assertEqual(contract_violations(reply(500, status(500, "InternalError"))),
                         ["server error 500"])
        self.assertEqual(contract_violations(reply(503, status(503, "ServiceUnavailable"))),
                         ["server error 503"])

    def test_future_resource_version_504_passes(self) -> None:
        future = status(504, "Timeout", "Timeout: Too large resource version: 9, current: 3")
        self.assertEqual(contract_violations(reply(504, future)), [])
        other = status(504, "Timeout", "Timeout: request did not complete")
        self.assertEqual(contract_violations(reply(504, other)), ["server error 504"])

    def test_error_bodies_must_be_statuses(self) -> None:
        self.assertEqual(contract_violations(reply(400, b"", "")),
                         ["error body is not a Status ('')"])
        self.assertEqual(contract_violations(reply(400, b"Non-UTF-8 encoding in URL.",
                                                   "text/html")),
                         ["error body is not a Status ('text/html')"])
        self.assertEqual(contract_violations(reply(404, {"kind": "Flunder"})),
                         ["error body is not a Status ('application/json')"])
        self.assertEqual(contract_violations(reply(404, status(400))),
                         ["Status code 400 is not 404"])

    def test_head_and_health_not_found_pass(self) -> None:
        self.assertEqual(contract_violations(reply(404, b"", "", method="HEAD")), [])
        go_404 = reply(404, b"404 page not found\n", "text/plain", path="/readyz/nope")
        self.assertEqual(contract_violations(go_404), [])
        elsewhere = reply(404, b"404 page not found\n", "text/plain", path="/apis/x")
        self.assertEqual(len(contract_violations(elsewhere)), 1)


class IsWatchTests(SynchronousTestCase):
    def test_watch_parameter_and_legacy_path(self) -> None:
        self.assertTrue(is_watch("GET", "https://h/apis/g/v1/flunders?watch=true"))
        self.assertTrue(is_watch("GET", "https://h/apis/g/v1/flunders?limit=1&watch=1"))
        self.assertTrue(is_watch("GET", "https://h/apis/g/v1/watch/flunders"))
        self.assertFalse(is_watch("GET", "https://h/apis/g/v1/flunders?watch=false"))
        self.assertFalse(is_watch("POST", "https://h/apis/g/v1/flunders?watch=true"))
