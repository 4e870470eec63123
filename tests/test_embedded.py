# -*- test-case-name: tests.test_embedded -*-
"""
A real C{twistd wardled} on the embedded store: objects and revisions
survive a restart, a second process on the same C{--data-dir} is refused
in one line, and a killed server loses no acknowledged write.
"""

from __future__ import annotations

import os
import signal
import subprocess

from tests.harness import TestPKI, WardledProcess, free_port

FLUNDERS = "/apis/wardle.example.com/v1beta1/namespaces/default/flunders"


def flunder(name: str) -> dict[str, object]:
    return {"apiVersion": "wardle.example.com/v1beta1", "kind": "Flunder", "metadata": {"name": name}}


def start(pki: TestPKI, data_dir: str) -> WardledProcess:
    return WardledProcess.start(None, pki, ["--data-dir", data_dir])


def test_objects_and_revisions_survive_a_restart(pki: TestPKI, tmp_path: object) -> None:
    data_dir = os.path.join(str(tmp_path), "data")
    server = start(pki, data_dir)
    try:
        created = server.https("POST", FLUNDERS, flunder("kept")).json()
        listed = server.https("GET", FLUNDERS).json()
    finally:
        assert server.stop() == 0
    again = start(pki, data_dir)
    try:
        fetched = again.https("GET", f"{FLUNDERS}/kept").json()
        assert fetched["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]
        assert fetched["metadata"]["uid"] == created["metadata"]["uid"]
        relisted = again.https("GET", FLUNDERS).json()
        assert relisted["metadata"]["resourceVersion"] == listed["metadata"]["resourceVersion"]
        # Revisions go on from where they were.
        later = again.https("POST", FLUNDERS, flunder("later")).json()
        assert int(later["metadata"]["resourceVersion"]) > int(created["metadata"]["resourceVersion"])
    finally:
        again.stop()


def test_second_process_on_the_same_directory_is_refused(pki: TestPKI, tmp_path: object) -> None:
    data_dir = os.path.join(str(tmp_path), "data")
    server = start(pki, data_dir)
    try:
        command = WardledProcess.command(None, pki, free_port(), (), data_dir)
        result = subprocess.run(command, check=False, capture_output=True, text=True, timeout=60)
        assert result.returncode == 1
        assert result.stderr.strip().splitlines()[-1] == (
            f"wardled: error: data directory {data_dir} is in use by another wardled "
            f"process (pid {server.pid})"
        )
        assert server.https("GET", "/readyz").status == 200
    finally:
        server.stop()


def test_kill_9_loses_no_acknowledged_write(pki: TestPKI, tmp_path: object) -> None:
    data_dir = os.path.join(str(tmp_path), "data")
    server = start(pki, data_dir)
    acknowledged = {}
    try:
        for index in range(20):
            answer = server.https("POST", FLUNDERS, flunder(f"f{index}"))
            assert answer.status == 201
            acknowledged[f"f{index}"] = answer.json()["metadata"]["resourceVersion"]
    finally:
        server.stop(signal.SIGKILL)
    again = start(pki, data_dir)
    try:
        items = again.https("GET", FLUNDERS).json()["items"]
        assert {item["metadata"]["name"]: item["metadata"]["resourceVersion"] for item in items} == acknowledged
    finally:
        again.stop()
