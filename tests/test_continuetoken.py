"""
Continue tokens in the reference's format.
"""

import base64
import json

from twisted.trial.unittest import SynchronousTestCase

from wardled import apierrors
from wardled.registry import continuetoken

PREFIX = "/registry/wardle.example.com/wardle.example.com/flunders/"


def raw(payload: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=").decode()


class ContinueTokenTests(SynchronousTestCase):
    def test_format_and_round_trip(self) -> None:
        token = continuetoken.encode(12, PREFIX + "default/b\x00", PREFIX)
        self.assertNotIn("=", token)
        payload = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        self.assertEqual(payload, {"v": "meta.k8s.io/v1", "rv": 12, "start": "default/b\x00"})
        point = continuetoken.decode(token, PREFIX)
        self.assertEqual((point.start_key, point.revision), (PREFIX + "default/b\x00", 12))

    def test_invalid_tokens(self) -> None:
        for token, text in [
            ("%%%", "continue key is not valid"),
            (raw({"v": "other", "rv": 1, "start": "a"}), "server does not recognize this encoded version"),
            (raw({"v": "meta.k8s.io/v1", "rv": 0, "start": "a"}), "incorrect encoded start resourceVersion"),
            (raw({"v": "meta.k8s.io/v1", "rv": 3, "start": ""}), "encoded start key empty"),
            (raw({"v": "meta.k8s.io/v1", "rv": 3, "start": "../../x"}), "continue key is not valid: ../../x"),
            (raw([1, 2]), "continue key is not valid"),
        ]:
            with self.assertRaises(apierrors.StatusError) as raised:
                continuetoken.decode(token, PREFIX)
            self.assertEqual(raised.exception.code, 400)
            self.assertIn(text, raised.exception.message)
            self.assertTrue(raised.exception.message.startswith("invalid continue token: "))

    def test_latest(self) -> None:
        point = continuetoken.decode(raw({"v": "meta.k8s.io/v1", "rv": -1, "start": "a"}), PREFIX)
        self.assertEqual(point.revision, continuetoken.LATEST)
