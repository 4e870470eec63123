"""
What the benchmarks read from C{/proc}: a process's CPU time and resident
memory, the whole machine's busy time, and a description of the machine.

CPU is read from C{/proc/<pid>/stat} (user + system time of every thread,
in clock ticks, so with a 10 ms resolution) and memory from C{VmRSS} in
C{/proc/<pid>/status}.  Busy time of the machine (user + nice + system
from C{/proc/stat}) minus the time of the processes a benchmark started
and of kernel threads (C{ksoftirqd} and workers doing the benchmark's own
loopback networking) tells how much CPU something else took during a
measurement: on this 2-core box anything else running skews every figure.
"""

from __future__ import annotations

import os
import platform
import resource
import subprocess
import time
from collections.abc import Iterable

import attrs

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

# /proc/<pid>/stat fields (1-based in proc(5)) after the ")" that ends comm:
# field 14 (utime) and 15 (stime) are at indexes 11 and 12 of the rest.
_FLAGS_INDEX = 6
_UTIME_INDEX = 11
_STIME_INDEX = 12
_PF_KTHREAD = 0x00200000


@attrs.frozen
class ProcessSample:
    """
    One process's CPU counter.

    @ivar name: its command name (C{comm}).
    @ivar kernel: whether it is a kernel thread.
    @ivar cpu: user + system CPU seconds used so far.
    """

    name: str
    kernel: bool
    cpu: float


def _sample(pid: str) -> ProcessSample | None:
    """
    Read C{/proc/<pid>/stat}; C{None} when the process is gone.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            text = stat.read()
    except OSError:
        return None
    name_end = text.rindex(b")")
    name = text[text.index(b"(") + 1 : name_end].decode("utf-8", "replace")
    fields = text[name_end + 2 :].split()
    ticks = int(fields[_UTIME_INDEX]) + int(fields[_STIME_INDEX])
    kernel = bool(int(fields[_FLAGS_INDEX]) & _PF_KTHREAD)
    return ProcessSample(name, kernel, ticks / CLOCK_TICKS)


def all_processes() -> dict[int, ProcessSample]:
    """
    The CPU counter of every process now.
    """
    samples = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            sample = _sample(entry)
            if sample is not None:
                samples[int(entry)] = sample
    return samples


def rss_bytes(pid: int) -> int:
    """
    The resident set size of process C{pid} in bytes (0 when it is gone).
    """
    try:
        with open(f"/proc/{pid}/status", "rb") as status:
            for line in status:
                if line.startswith(b"VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def machine_busy_seconds() -> float:
    """
    CPU seconds all cores spent in user, nice and system mode since boot.

    Interrupt and softirq time is left out: loopback networking charges it
    there, and it belongs to the benchmark's own traffic.
    """
    with open("/proc/stat", "rb") as stat:
        fields = stat.readline().split()
    user, nice, system = (int(value) for value in fields[1:4])
    return (user + nice + system) / CLOCK_TICKS


@attrs.frozen
class CpuSnapshot:
    """
    CPU counters at one moment.

    @ivar at: C{time.monotonic()} when read.
    @ivar machine: L{machine_busy_seconds}.
    @ivar processes: every process's counter by pid.
    """

    at: float
    machine: float
    processes: dict[int, ProcessSample]

    @classmethod
    def take(cls) -> CpuSnapshot:
        """
        Read the counters of the machine and of every process now.
        """
        return cls(time.monotonic(), machine_busy_seconds(), all_processes())


@attrs.frozen
class CpuUsage:
    """
    CPU used between two L{CpuSnapshot}s.

    @ivar elapsed: wall-clock seconds between them.
    @ivar processes: CPU seconds each watched process used.
    @ivar kernel: CPU seconds kernel threads used (mostly the benchmark's
        own loopback networking).
    @ivar other: CPU seconds the rest of the machine used (busy time not
        spent in a watched process or a kernel thread; this includes
        processes that came and went in between).
    @ivar top_others: the largest other consumers seen in both snapshots
        or started in between, as C{"name[pid] seconds"}.
    """

    elapsed: float
    processes: dict[int, float]
    kernel: float
    other: float
    top_others: list[str]

    @classmethod
    def between(
        cls, before: CpuSnapshot, after: CpuSnapshot, watched: Iterable[int]
    ) -> CpuUsage:
        """
        The usage from C{before} to C{after}, attributing the processes
        C{watched} to the benchmark.
        """
        watched = set(watched)
        deltas = {
            pid: (sample, sample.cpu - _cpu_at(before, pid))
            for pid, sample in after.processes.items()
        }
        used = {pid: deltas[pid][1] for pid in watched if pid in deltas}
        kernel = sum(delta for sample, delta in deltas.values() if sample.kernel)
        other = after.machine - before.machine - sum(used.values()) - kernel
        others = sorted(
            (
                (delta, f"{sample.name}[{pid}] {delta:.2f}s")
                for pid, (sample, delta) in deltas.items()
                if pid not in watched and not sample.kernel and delta > 0
            ),
            reverse=True,
        )
        return cls(
            after.at - before.at,
            used,
            kernel,
            max(other, 0.0),
            [label for _, label in others[:3]],
        )

    def of(self, pid: int) -> float:
        """
        CPU seconds process C{pid} used (0.0 if it was not watched).
        """
        return self.processes.get(pid, 0.0)

    @property
    def other_share(self) -> float:
        """
        The rest of the machine's CPU as a fraction of one core.
        """
        return self.other / self.elapsed if self.elapsed > 0 else 0.0


def _cpu_at(snapshot: CpuSnapshot, pid: int) -> float:
    sample = snapshot.processes.get(pid)
    return 0.0 if sample is None else sample.cpu


def pid_running(argument: str) -> int:
    """
    The pid of the process whose command line has C{argument} as one of
    its arguments (e.g. etcd's C{--data-dir=...}, unique to one server).

    @raise LookupError: no such process.
    """
    wanted = argument.encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                arguments = cmdline.read().split(b"\0")
        except OSError:
            continue
        if wanted in arguments:
            return int(entry)
    raise LookupError(f"no process running with argument {argument!r}")


def wait_until_quiet(
    pids: Iterable[int], limit: float, timeout: float, window: float = 1.0
) -> float:
    """
    Block until, over one C{window} of seconds, processes other than C{pids}
    used less than C{limit} of a core, or until C{timeout} seconds passed.

    @return: the share of a core the rest of the machine used in the last
        window (above C{limit} when the wait timed out).
    """
    watched = list(pids)
    deadline = time.monotonic() + timeout
    while True:
        before = CpuSnapshot.take()
        time.sleep(window)
        usage = CpuUsage.between(before, CpuSnapshot.take(), watched)
        if usage.other_share < limit or time.monotonic() >= deadline:
            return usage.other_share


def raise_open_files_limit(wanted: int) -> int:
    """
    Raise this process's soft limit on open files towards C{wanted} (never
    above the hard limit); children inherit it.

    @return: the soft limit now in force.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        ceiling = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (ceiling, hard))
        soft = ceiling
    return soft


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _etcd_version(binary: str) -> str:
    try:
        output = subprocess.run(
            [binary, "--version"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    for line in output.splitlines():
        if line.startswith("etcd Version:"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def machine_description(etcd_binary: str) -> dict[str, object]:
    """
    What the numbers were measured on: cores, CPU model, memory, kernel,
    Python and etcd versions, and the load average now.
    """
    with open("/proc/meminfo", encoding="utf-8") as meminfo:
        total_kib = int(meminfo.readline().split()[1])
    return {
        "cpus": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_gib": round(total_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "etcd": _etcd_version(etcd_binary),
        "load_average": [round(value, 2) for value in os.getloadavg()],
    }
