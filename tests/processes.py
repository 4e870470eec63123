# -*- test-case-name: tests.test_processes -*-
"""
Subprocesses for tests and benchmarks: free loopback ports, starting a
server with its output in a log file, reading that log, and stopping it
(killed at exit if a test forgot).

The harnesses (L{tests.harness}, L{tests.kubestandin}, L{tests.etcdserver},
L{tests.etcdcluster}) and the benchmarks start their servers the same way;
this is the one place that does it.  Everything here blocks; it runs in test
code, never under a reactor.
"""

from __future__ import annotations

import atexit
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Mapping, Sequence
from typing import Any

#: The repository root (what C{python -m tests.<module>} needs as its cwd).
REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: Seconds L{stop_process} waits after its signal before SIGKILL.
STOP_TIMEOUT = 10.0

_KILL_AT_EXIT: set[subprocess.Popen[Any]] = set()


def _kill_leftovers() -> None:
    for process in list(_KILL_AT_EXIT):
        if process.poll() is None:
            process.send_signal(signal.SIGCONT)  # in case a test paused it
            process.kill()
            process.wait()


atexit.register(_kill_leftovers)


def free_ports(count: int) -> list[int]:
    """
    Ask the kernel for C{count} distinct TCP ports on 127.0.0.1 that are
    free right now.
    """
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def free_port() -> int:
    """
    A TCP port on 127.0.0.1 that is free right now.
    """
    return free_ports(1)[0]


def unbuffered_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """
    This process's environment plus C{PYTHONUNBUFFERED=1} (so a Python
    server's log is complete when read) and C{extra}.
    """
    return {**os.environ, "PYTHONUNBUFFERED": "1", **(extra or {})}


def spawn_logged(
    command: Sequence[str],
    log_path: str,
    *,
    cwd: str | None = None,
    env: Mapping[str, str] | None = None,
    append: bool = False,
    kill_at_exit: bool = True,
) -> subprocess.Popen[bytes]:
    """
    Start C{command} with stdin from C{/dev/null} and stdout and stderr
    written to C{log_path}.

    @param cwd: its working directory (default: this process's).
    @param env: its whole environment (default: this process's).
    @param append: add to an existing log instead of starting it afresh.
    @param kill_at_exit: SIGKILL it when this process exits if it still
        runs then (L{stop_process} takes it off that list).
    """
    with open(log_path, "ab" if append else "wb") as log:
        process = subprocess.Popen(
            list(command),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=None if env is None else dict(env),
        )
    if kill_at_exit:
        _KILL_AT_EXIT.add(process)
    return process


def spawn_module(
    module: str, arguments: Sequence[str], log_path: str
) -> subprocess.Popen[bytes]:
    """
    Run C{python -m module arguments} from the repository root, unbuffered,
    logging to C{log_path} (see L{spawn_logged}); it is killed at exit if it
    still runs then.
    """
    return spawn_logged(
        [sys.executable, "-m", module, *arguments],
        log_path,
        cwd=REPOSITORY,
        env=unbuffered_environment(),
    )


def read_log(log_path: str, missing: str) -> str:
    """
    Everything written to C{log_path} so far (undecodable bytes replaced),
    or C{missing} when it cannot be read.
    """
    try:
        with open(log_path, "rb") as log:
            return log.read().decode("utf-8", "replace")
    except OSError:
        return missing


def stop_process(process: subprocess.Popen[Any], sig: int = signal.SIGTERM) -> None:
    """
    Send C{sig} to C{process} if it still runs, wait up to L{STOP_TIMEOUT}
    seconds, then SIGKILL; always reaps it, and no longer kills it at exit.
    """
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    _KILL_AT_EXIT.discard(process)
