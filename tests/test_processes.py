# -*- test-case-name: tests.test_processes -*-
"""
Tests for L{tests.processes}: servers started for tests get their output
in a log, their environment as asked, and are stopped and reaped (and
taken off the kill-at-exit list) by L{stop_process}.  Real child processes;
nothing sleeps.
"""

from __future__ import annotations

import os
import signal
import sys

from twisted.trial.unittest import SynchronousTestCase

from tests import processes
from tests.processes import (
    free_ports,
    read_log,
    spawn_logged,
    stop_process,
    unbuffered_environment,
)


class FreePortsTests(SynchronousTestCase):
    """
    L{free_ports}.
    """

    def test_distinct(self) -> None:
        """
        The ports asked for at once are distinct and in the ephemeral range.
        """
        ports = free_ports(3)
        self.assertEqual(len(set(ports)), 3)
        self.assertTrue(all(1024 < port < 65536 for port in ports), ports)


class SpawnTests(SynchronousTestCase):
    """
    L{spawn_logged}, L{read_log} and L{stop_process}.
    """

    def setUp(self) -> None:
        self.log_path = self.mktemp()

    def run_to_end(
        self,
        script: str,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        append: bool = False,
    ) -> None:
        """
        Run C{script} in a child Python logging to C{self.log_path}; it must
        exit with status 0.
        """
        command = [sys.executable, "-c", script]
        process = spawn_logged(command, self.log_path, cwd=cwd, env=env, append=append)
        self.assertEqual(process.wait(), 0)
        stop_process(process)

    def test_output_logged(self) -> None:
        """
        stdout and stderr both go to the log, in order.
        """
        self.run_to_end(
            "import sys; print('out', flush=True); print('err', file=sys.stderr)"
        )
        self.assertEqual(read_log(self.log_path, "missing"), "out\nerr\n")

    def test_append(self) -> None:
        """
        C{append=True} keeps what the log held; the default starts afresh.
        """
        self.run_to_end("print('first')")
        self.run_to_end("print('second')", append=True)
        self.assertEqual(read_log(self.log_path, "missing"), "first\nsecond\n")
        self.run_to_end("print('third')")
        self.assertEqual(read_log(self.log_path, "missing"), "third\n")

    def test_environment_and_cwd(self) -> None:
        """
        The child gets the environment and working directory asked for.
        """
        directory = self.mktemp()
        os.makedirs(directory)
        self.run_to_end(
            "import os; print(os.environ['PYTHONUNBUFFERED'], os.environ['EXTRA'],"
            " os.getcwd())",
            cwd=directory,
            env=unbuffered_environment({"EXTRA": "yes"}),
        )
        self.assertEqual(
            read_log(self.log_path, "missing"),
            f"1 yes {os.path.realpath(directory)}\n",
        )

    def test_missing_log(self) -> None:
        """
        A log that cannot be read gives the text for that.
        """
        self.assertEqual(read_log(self.mktemp(), "(no log)"), "(no log)")

    def test_stop_process(self) -> None:
        """
        L{stop_process} sends the signal, reaps the process and takes it off
        the kill-at-exit list; again, it does nothing.
        """
        process = spawn_logged(
            [sys.executable, "-c", "import signal; signal.pause()"], self.log_path
        )
        self.assertIn(process, processes._KILL_AT_EXIT)
        stop_process(process, signal.SIGTERM)
        self.assertEqual(process.returncode, -signal.SIGTERM)
        self.assertNotIn(process, processes._KILL_AT_EXIT)
        stop_process(process, signal.SIGKILL)
        self.assertEqual(process.returncode, -signal.SIGTERM)

    def test_not_killed_at_exit(self) -> None:
        """
        C{kill_at_exit=False} leaves the process off the kill-at-exit list.
        """
        process = spawn_logged(
            [sys.executable, "-c", "pass"], self.log_path, kill_at_exit=False
        )
        try:
            self.assertNotIn(process, processes._KILL_AT_EXIT)
        finally:
            process.wait()
