# -*- test-case-name: tests.test_logjson -*-
"""
C{twistd --logger=wardled.logjson.observer}: the server's log as JSON lines.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

from tests.etcdserver import stop_process
from tests.harness import TestPKI, WardledProcess, free_port


def test_log_lines_are_json(pki: TestPKI, tmp_path: object) -> None:
    command = WardledProcess.command(
        None, pki, free_port(), (), os.path.join(str(tmp_path), "data")
    )
    command.insert(1, "--logger=wardled.logjson.observer")
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=str(tmp_path)
    )
    try:
        assert process.stdout is not None
        deadline = time.monotonic() + 30
        events = []
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            events.append(json.loads(line))
            if "synced" in events[-1].get("log_format", ""):
                break
    finally:
        stop_process(process, signal.SIGTERM)
    assert events, "no log line"
    assert all("log_time" in event and "log_level" in event for event in events)
    assert any("synced" in event.get("log_format", "") for event in events)
