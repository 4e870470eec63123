# -*- test-case-name: tests.test_health -*-
"""
C{/healthz}, C{/livez} and C{/readyz}, with named checks, C{?verbose} and
C{?exclude}, in the reference's plain-text format.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

import attrs
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.interfaces import IReactorTime

Check = Callable[[], Awaitable[None]]


@attrs.frozen
class HealthCheck:
    """
    One named check; it fails by raising.
    """

    name: str
    run: Check


async def _ok() -> None:
    return None


def storage_check(name: str, check_health: Callable[[], Deferred[None]], clock: IReactorTime, timeout: float) -> HealthCheck:
    """
    A check that the storage answers within C{timeout} seconds.
    """

    async def run() -> None:
        deferred = check_health()
        deferred.addTimeout(timeout, clock)
        await deferred

    return HealthCheck(name, run)


@attrs.frozen
class HealthEndpoint:
    """
    The checks of one endpoint (C{healthz}, C{livez} or C{readyz}).
    """

    endpoint: str
    checks: tuple[HealthCheck, ...]

    def find(self, name: str) -> HealthCheck | None:
        for check in self.checks:
            if check.name == name:
                return check
        return None

    async def run(self, verbose: bool, exclude: Sequence[str]) -> tuple[int, str]:
        """
        Run every check not excluded; the HTTP code and the text body.
        """
        lines = []
        failed = False
        for check in self.checks:
            if check.name in exclude:
                lines.append(f"[+]{check.name} excluded: ok")
                continue
            try:
                await check.run()
            except Exception:  # noqa: BLE001 - any failure fails the check
                failed = True
                lines.append(f"[-]{check.name} failed: reason withheld")
            else:
                lines.append(f"[+]{check.name} ok")
        if failed:
            return 500, "\n".join(lines) + f"\n{self.endpoint} check failed\n"
        if verbose:
            return 200, "\n".join(lines) + f"\n{self.endpoint} check passed\n"
        return 200, "ok"

    async def run_one(self, name: str) -> tuple[int, str]:
        check = self.find(name)
        if check is None:
            return 404, "404 page not found\n"
        try:
            await check.run()
        except Exception:  # noqa: BLE001 - any failure fails the check
            return 500, f"internal server error: {name} check failed\n"
        return 200, "ok"


def health_endpoints(
    storage_health: HealthCheck,
    readiness: HealthCheck,
    shutting_down: Callable[[], bool],
    extra_readiness: Sequence[HealthCheck] = (),
) -> dict[str, HealthEndpoint]:
    """
    The three endpoints with the reference's check names, plus readiness
    checks of wardled's own (the watch cache).

    Unlike kube-apiserver, C{/livez} leaves storage out: a process whose
    etcd is away is alive (it recovers by itself when etcd returns), and
    restarting it would only drop its watch cache and its clients' watches.
    C{/readyz} and C{/healthz} do check storage.
    """

    async def shutdown() -> None:
        if shutting_down():
            raise RuntimeError("process is shutting down")

    alive = (HealthCheck("ping", _ok), HealthCheck("log", _ok))
    common = (*alive, storage_health)
    return {
        "healthz": HealthEndpoint("healthz", common),
        "livez": HealthEndpoint("livez", alive),
        "readyz": HealthEndpoint(
            "readyz",
            (*common, readiness, *extra_readiness, HealthCheck("shutdown", shutdown)),
        ),
    }


def run_endpoint(endpoint: HealthEndpoint, check: str | None, verbose: bool, exclude: Sequence[str]) -> Deferred[tuple[int, str]]:
    if check:
        return ensureDeferred(endpoint.run_one(check))
    return ensureDeferred(endpoint.run(verbose, exclude))
