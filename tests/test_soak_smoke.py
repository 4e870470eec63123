# -*- test-case-name: tests.test_soak_smoke -*-
"""
The soak (C{bench/soak.py}) is not part of the suite's verdict on wardled:
it runs for minutes.  These tests prove that it still runs (a 20-second
soak against a real etcd and wardled, every check present and passing)
and that its judges can tell a fault when they see one (unit tests of the
pure functions that decide the verdicts).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from array import array
from pathlib import Path
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from bench._soak_checks import (
    NO_LATER_REVISION,
    ErrorWindows,
    RssTrend,
    audit_writes,
    delete_ranges,
    drain_targets,
    expected_events,
)
from bench._soak_load import NameRecord, Workload
from bench._soak_record import CREATE, DELETE, UPDATE, Ack, Failure, name_index
from bench._soak_watch import Receipts, judge

REPOSITORY = Path(__file__).resolve().parent.parent
SMOKE_TIMEOUT = 90
CHECK_NAMES = {
    "no acknowledged write lost",
    "no watcher missed an event without a 410",
    "RSS flat after warm-up",
    "no 5xx outside the outage window",
}


def test_soak_smoke(tmp_path: Path) -> None:
    """
    A 20-second soak with 10 watchers runs to the end: the report and the
    JSON hold every check, all passing, and the etcd restart happened.
    """
    output = tmp_path / "soak.json"
    command = [sys.executable, "-m", "bench.soak", "--duration", "20"]
    command += ["--watchers", "10", "--rate", "20", "--json", str(output)]
    finished = subprocess.run(
        command,
        cwd=REPOSITORY,
        capture_output=True,
        text=True,
        timeout=SMOKE_TIMEOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        check=False,
    )
    assert finished.returncode == 0, finished.stdout + finished.stderr
    document = json.loads(output.read_text())
    assert set(document["checks"]) == CHECK_NAMES, document["checks"]
    assert all(check["passed"] for check in document["checks"].values()), document[
        "checks"
    ]
    assert document["passed"] is True
    for name in CHECK_NAMES:
        assert f"PASS  {name}: " in finished.stdout, finished.stdout
    assert "lost writes" in finished.stdout and "operation" in finished.stdout
    assert document["outage"]["wardled_ready_s"] is not None, document["outage"]
    assert sum(document["writes"].values()) > 100, document["writes"]
    assert document["watch"]["watchers"] == 10
    assert document["watch"]["covered"] > 0
    assert {"create", "update", "delete", "list", "list-page", "watch"} <= set(
        document["operations"]
    )


def ack(
    operation: str, name: int, revision: int, sent: float, namespace: str = "ns"
) -> Ack:
    """
    An ack answered 0.1 s after it was sent.
    """
    return Ack(namespace, name, operation, revision, sent, sent + 0.1)


def received(*events: tuple[int, int, int]) -> Receipts:
    """
    A watcher's receipts from C{(revision, name, type code)} triples.
    """
    receipts = Receipts()
    for revision, name, type_code in events:
        receipts.add(revision, name, type_code)
    return receipts


class NamesTests(SynchronousTestCase):
    def test_name_index(self) -> None:
        """
        The soak's object names map back to their number; others to -1.
        """
        self.assertEqual(name_index("bench-000042"), 42)
        self.assertEqual(name_index("someone-else"), -1)


class WorkloadTests(SynchronousTestCase):
    def _created(self, workload: Workload) -> int:
        """
        Create one object and acknowledge it at resourceVersion 5.
        """
        write = workload.next_write()
        self.assertEqual(write.operation, CREATE)
        returned = {
            "metadata": {
                "name": f"bench-{write.name:06d}",
                "resourceVersion": "5",
                "managedFields": [{"manager": "x"}],
            }
        }
        workload.acknowledged(write, json.dumps(returned).encode(), 0.0, 0.1)
        return write.name

    def test_one_write_per_object_at_a_time(self) -> None:
        """
        An object being written is not chosen again until its write is
        answered; an update carries the acknowledged resourceVersion.
        """
        workload = Workload(["ns"], 10, seed=3)
        name = self._created(workload)
        writes = [workload.next_write() for _ in range(30)]
        touching = [write for write in writes if write.name == name]
        self.assertEqual(len(touching), 1)
        if touching[0].operation == UPDATE:
            body = json.loads(touching[0].body)
            self.assertEqual(body["metadata"]["resourceVersion"], "5")
            self.assertNotIn("managedFields", body["metadata"])

    def test_unsure_write_retires_the_object(self) -> None:
        """
        After a 5xx the object is never written again and its record says
        which write may have happened.
        """
        workload = Workload(["ns"], 10, seed=3)
        name = self._created(workload)
        writes = [workload.next_write() for _ in range(30)]
        (touching,) = [write for write in writes if write.name == name]
        workload.unsure(touching)
        later = [workload.next_write() for _ in range(30)]
        self.assertNotIn(name, [write.name for write in later])
        self.assertEqual(workload.records[name].unsure, touching.operation)
        last_ack = workload.records[name].last_ack
        assert last_ack is not None
        self.assertEqual((last_ack.operation, last_ack.revision), (CREATE, 5))


class DeleteRangeTests(SynchronousTestCase):
    def test_bounds(self) -> None:
        """
        A delete's revision lies above what was acknowledged before it was
        sent and below what was sent after it was acknowledged.
        """
        acks = [
            ack(CREATE, 1, 10, sent=0.0),
            ack(CREATE, 2, 11, sent=1.0),
            ack(DELETE, 1, 0, sent=2.0),
            ack(UPDATE, 2, 13, sent=3.0),
        ]
        self.assertEqual(delete_ranges(acks), {1: (11, 13)})

    def test_open_end(self) -> None:
        """
        With nothing written after it, a delete's range has no upper end.
        """
        acks = [ack(CREATE, 1, 10, sent=0.0), ack(DELETE, 1, 0, sent=2.0)]
        self.assertEqual(delete_ranges(acks), {1: (10, NO_LATER_REVISION)})

    def test_expected_and_targets(self) -> None:
        """
        Each ack owes one event in its namespace; the drain target is the
        highest known revision per namespace.
        """
        acks = [
            ack(CREATE, 1, 10, sent=0.0, namespace="a"),
            ack(CREATE, 2, 11, sent=1.0, namespace="b"),
            ack(DELETE, 1, 0, sent=2.0, namespace="a"),
            ack(CREATE, 3, 14, sent=3.0, namespace="b"),
        ]
        expected = expected_events(acks)
        self.assertEqual(
            [(e.name, e.type_code, e.after, e.before) for e in expected["a"]],
            [(1, 1, 9, 11), (1, 3, 11, 14)],
        )
        self.assertEqual(drain_targets(acks), {"a": 10, "b": 14})


JUDGE_ACKS = (
    ack(CREATE, 1, 10, sent=0.0),
    ack(UPDATE, 1, 12, sent=1.0),
    ack(CREATE, 2, 13, sent=2.0),
    ack(DELETE, 2, 0, sent=3.0),
    ack(CREATE, 3, 16, sent=4.0),
)


class JudgeTests(SynchronousTestCase):
    def _judge(
        self, stretches: list[tuple[int, int]], events: Receipts
    ) -> dict[str, Any]:
        return judge("ns", stretches, events, expected_events(JUDGE_ACKS)["ns"])

    def test_everything_received(self) -> None:
        """
        A watcher that saw every acknowledged event passes.
        """
        counts = self._judge(
            [(5, 16)],
            received((10, 1, 1), (12, 1, 2), (13, 2, 1), (15, 2, 3), (16, 3, 1)),
        )
        self.assertEqual(
            (counts["covered"], counts["delivered"], counts["missed"]), (5, 5, 0)
        )
        self.assertEqual(counts["mismatched"], 0)

    def test_missed_update_and_delete(self) -> None:
        """
        A missing update and a missing delete inside the covered stretch
        are missed.
        """
        counts = self._judge([(5, 16)], received((10, 1, 1), (13, 2, 1), (16, 3, 1)))
        self.assertEqual(counts["missed"], 2)
        self.assertEqual(len(counts["samples"]), 2)

    def test_410_gap_excused(self) -> None:
        """
        Events after the last one received before a 410, and before the
        re-list's revision, are not owed.
        """
        counts = self._judge([(5, 10), (14, 16)], received((10, 1, 1), (16, 3, 1)))
        self.assertEqual(counts["missed"], 0)
        self.assertEqual(counts["covered"], 2)

    def test_wrong_object_at_revision(self) -> None:
        """
        An event at an acknowledged revision but for another object is a
        mismatch (and the owed event is missed).
        """
        counts = self._judge(
            [(5, 16)],
            received((10, 1, 1), (12, 3, 2), (13, 2, 1), (15, 2, 3), (16, 3, 1)),
        )
        self.assertEqual((counts["mismatched"], counts["missed"]), (1, 1))

    def test_delete_outside_its_range(self) -> None:
        """
        A DELETED event whose revision cannot be the acknowledged delete's
        is a mismatch.
        """
        counts = self._judge(
            [(5, 20)],
            received((10, 1, 1), (12, 1, 2), (13, 2, 1), (16, 3, 1), (18, 2, 3)),
        )
        self.assertEqual((counts["mismatched"], counts["missed"]), (1, 1))


class AuditTests(SynchronousTestCase):
    def _records(self) -> dict[int, NameRecord]:
        created = NameRecord("ns", ack(CREATE, 1, 10, sent=0.0))
        updated = NameRecord("ns", ack(UPDATE, 2, 12, sent=1.0))
        deleted = NameRecord("ns", ack(DELETE, 3, 0, sent=2.0))
        unsure = NameRecord("ns", ack(CREATE, 4, 14, sent=3.0), unsure=DELETE)
        never = NameRecord("ns", None, unsure=CREATE)
        return {1: created, 2: updated, 3: deleted, 4: unsure, 5: never}

    def test_consistent(self) -> None:
        """
        The final state of every acknowledged write: no fault; an unsure
        delete may have happened, an unsure create may not have.
        """
        audit = audit_writes(self._records(), {1: 10, 2: 12})
        self.assertEqual((audit.checked, audit.faults, audit.unsure), (4, 0, 2))

    def test_faults(self) -> None:
        """
        A lost create, an older revision, a deleted object still there and
        an object nobody made are each counted.
        """
        audit = audit_writes(self._records(), {2: 11, 3: 13, 4: 14, 9: 20})
        self.assertEqual(
            (audit.lost, audit.changed, audit.resurrected, audit.unknown), (2, 0, 1, 1)
        )

    def test_unexplained_change(self) -> None:
        """
        A newer revision than acknowledged, with no unsure update, is a
        change nobody acknowledged.
        """
        audit = audit_writes(self._records(), {1: 10, 2: 15, 4: 14})
        self.assertEqual((audit.changed, audit.faults), (1, 1))


class WindowTests(SynchronousTestCase):
    def test_inside_and_outside(self) -> None:
        """
        5xx and unanswered requests are sorted by time against the window
        widened by the grace period; 4xx are ignored.
        """
        failures = [
            Failure(105.0, "create", 503, ""),
            Failure(125.0, "create", 503, ""),
            Failure(131.0, "list", 500, ""),
            Failure(99.0, "watch", 0, "reset"),
            Failure(150.0, "update", 409, "conflict"),
        ]
        windows = ErrorWindows.of(failures, 100.0, (10.0, 20.0), 10.0)
        self.assertEqual(
            (
                windows.server_errors_inside,
                windows.server_errors_outside,
                windows.no_response_inside,
                windows.no_response_outside,
            ),
            (2, 1, 0, 1),
        )

    def test_no_outage(self) -> None:
        """
        Without an outage every 5xx is outside.
        """
        windows = ErrorWindows.of([Failure(1.0, "list", 502, "")], 0.0, None, 10.0)
        self.assertEqual(windows.server_errors_outside, 1)


class RssTests(SynchronousTestCase):
    def test_trend_after_warmup(self) -> None:
        """
        The first sample after the warm-up, the last, the growth and the
        least-squares slope per minute.
        """
        samples = [(0.0, 10), (30.0, 100), (60.0, 100), (120.0, 110)]
        trend = RssTrend.of(samples, 60.0)
        self.assertEqual((trend.first, trend.last, trend.peak), (100, 110, 110))
        self.assertAlmostEqual(trend.growth, 0.1)
        self.assertAlmostEqual(trend.slope, 10.0)


def test_receipts_are_compact() -> None:
    """
    A watcher keeps its receipts in typed arrays (hundreds of thousands of
    events per process over a long soak).
    """
    receipts = received((1, 2, 3))
    assert isinstance(receipts.revisions, array) and receipts.revisions.typecode == "q"
