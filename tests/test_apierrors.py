"""
Status bodies and field error texts, byte for byte as the reference's.
"""

from twisted.trial.unittest import SynchronousTestCase

from wardled import apierrors
from wardled.apis import field
from wardled.apis.field import FieldError, GoRepr

FLUNDERS = apierrors.GroupResource("wardle.example.com", "flunders")


class StatusTests(SynchronousTestCase):
    def test_not_found_shape(self) -> None:
        self.assertEqual(
            apierrors.not_found(FLUNDERS, "x").status(),
            {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
             "message": 'flunders.wardle.example.com "x" not found', "reason": "NotFound",
             "details": {"name": "x", "group": "wardle.example.com", "kind": "flunders"},
             "code": 404},
        )

    def test_key_order(self) -> None:
        status = apierrors.conflict(FLUNDERS, "x", apierrors.OBJECT_MODIFIED).status()
        self.assertEqual(
            list(status), ["kind", "apiVersion", "metadata", "status", "message", "reason", "details", "code"]
        )

    def test_invalid_aggregates(self) -> None:
        errors = [
            field.required("metadata.name", "name or generateName is required"),
            field.invalid("spec.x", 3, "bad"),
            FieldError(field.ErrorType.INVALID, "metadata.resourceVersion", GoRepr("0x0"), "must be specified for an update"),
        ]
        error = apierrors.invalid(apierrors.GroupKind("wardle.example.com", "Flunder"), "n", errors)
        self.assertEqual(
            error.message,
            'Flunder.wardle.example.com "n" is invalid: [metadata.name: Required value: name or '
            "generateName is required, spec.x: Invalid value: 3: bad, metadata.resourceVersion: "
            "Invalid value: 0x0: must be specified for an update]",
        )
        self.assertEqual(
            (error.details or {})["causes"][0],
            {"reason": "FieldValueRequired", "message": "Required value: name or generateName is required",
             "field": "metadata.name"},
        )

    def test_not_supported_text(self) -> None:
        self.assertEqual(
            str(field.not_supported("dryRun", "x", ["All"])),
            'dryRun: Unsupported value: "x": supported values: "All"',
        )

    def test_forbidden_non_resource(self) -> None:
        error = apierrors.forbidden(None, "/apis", 'User "a" cannot get path "/apis"')
        self.assertEqual(error.message, 'forbidden: User "a" cannot get path "/apis"')

    def test_timeout_prefix(self) -> None:
        self.assertEqual(apierrors.timeout("Too large", 1).message, "Timeout: Too large")

    def test_server_not_found(self) -> None:
        status = apierrors.server_not_found().status()
        self.assertEqual(status["message"], "the server could not find the requested resource")
        self.assertEqual(status["details"], {})
