# -*- test-case-name: tests.test_devserver -*-
"""
C{make run}'s development server (L{wardled.devserver}): from an empty
directory it makes certificates, serves on the embedded store without
etcd, and prints commands that work when pasted: this test runs them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from tests.etcdserver import stop_process
from tests.harness import free_port


def _read_commands(process: subprocess.Popen[str], timeout: float = 60.0) -> list[str]:
    """
    The indented commands the server prints once it is ready.
    """
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    commands: list[str] = []
    seen_ready = False
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        if "wardled is serving on" in line:
            seen_ready = True
        elif seen_ready and line.startswith("  "):
            commands.append(line.strip())
        elif seen_ready and commands and not line.strip():
            return commands
    raise AssertionError(f"no commands printed; got {commands!r}")


def test_printed_commands_work_from_an_empty_directory(tmp_path: object) -> None:
    directory = os.path.join(str(tmp_path), "dev")
    port = free_port()
    environment = {key: value for key, value in os.environ.items() if not key.startswith("ETCD")}
    environment["PATH"] = os.path.dirname(sys.executable) + os.pathsep + environment.get("PATH", "")
    process = subprocess.Popen(
        [sys.executable, "-m", "wardled.devserver", "--dir", directory, "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=environment,
    )
    try:
        commands = _read_commands(process)
        create, list_all, httpie, kubectl_flunders, kubectl_fischers = commands
        created = subprocess.run(create, shell=True, capture_output=True, text=True, timeout=30, check=True)
        assert json.loads(created.stdout)["metadata"]["name"] == "my-first-flunder"
        listed = subprocess.run(list_all, shell=True, capture_output=True, text=True, timeout=30, check=True)
        assert [item["metadata"]["name"] for item in json.loads(listed.stdout)["items"]] == [
            "my-first-flunder"
        ]
        shown = subprocess.run(
            httpie, shell=True, capture_output=True, text=True, timeout=60, env=environment, check=True
        )
        assert json.loads(shown.stdout)["metadata"]["labels"] == {"sample-label": "true"}
        table = subprocess.run(kubectl_flunders, shell=True, capture_output=True, text=True, timeout=60, check=True)
        assert "my-first-flunder" in table.stdout
        nothing = subprocess.run(
            kubectl_fischers, shell=True, capture_output=True, text=True, timeout=60, check=True
        )
        assert "No resources found" in nothing.stderr
        assert os.path.exists(os.path.join(directory, "data", "wardled.db"))
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
        stop_process(process, signal.SIGTERM)
    assert process.returncode in (0, -signal.SIGINT, -signal.SIGTERM)
