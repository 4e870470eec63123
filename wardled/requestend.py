# -*- test-case-name: tests.test_requestend -*-
"""
One end-of-request notification shared by everything that waits for it.

Several concerns must know when a request ends, answered or cut off: the
shutdown tracker, the request observers (metrics, audit), the max-in-flight
limit, the request deadline.  Twisted's C{Request.notifyFinish} gives each
caller a L{Deferred} of its own, so every request paid for four of them,
their callback chains and four calls at the end.  L{when_finished} keeps
plain callables on the request instead and asks Twisted for one
notification that runs them all, in the order they were registered, each
isolated from the others' failures as separate Deferreds were.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.logger import Logger
from twisted.python.failure import Failure

#: Told how the request ended: C{None} once answered, the L{Failure} of
#: the lost connection otherwise.
FinishHook = Callable[[Failure | None], object]

_HOOKS = "_wardled_finish_hooks"

log = Logger()


def when_finished(request: Any, hook: FinishHook) -> None:
    """
    Call C{hook} when C{request}'s response is done or its connection is
    lost (as C{request.notifyFinish()} would fire; a hook registered after
    that is never called, as such a Deferred never fires).
    """
    hooks: list[FinishHook] | None = vars(request).get(_HOOKS)
    if hooks is None:
        hooks = []
        setattr(request, _HOOKS, hooks)
        # The class's own notification: a route may shadow the instance's
        # (DeadlineCancelling does, to fail Klein's at the deadline).
        type(request).notifyFinish(request).addBoth(_run, hooks)
    hooks.append(hook)


def _run(result: object, hooks: list[FinishHook]) -> None:
    reason = result if isinstance(result, Failure) else None
    for hook in hooks:
        try:
            hook(reason)
        except Exception:  # noqa: BLE001 - one concern's bug must not skip the others
            log.failure("a request end hook failed")
