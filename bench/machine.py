"""What a benchmark reads of its processes and its machine, and how it schedules them:
CPU used by a process and by the machine's cores (/proc), resident memory, py-spy
sampling, and `Isolation` (``bench/control_plane.py --isolate``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


class Isolation:
    """``--isolate``: the measured node, the mock upstream and this process (the load
    generator) run under the real-time policy (SCHED_FIFO) while a node is measured, so
    they get a core the moment they can run. What stands in for other machines (the
    other node, the database, the churner) then no longer shows as the measured node's
    latency: on a machine with fewer cores than processes, that latency is mostly the
    wait for a core, not anything a change does. Off: every process scheduled alike,
    as on one shared machine."""

    PRIORITY = 10

    def __init__(self, enabled: bool, mock: int) -> None:
        self.enabled = enabled
        self._mock = mock
        self._favoured: list[int] = []

    def favour(self, node: int) -> None:
        if not self.enabled:
            return
        self.end()
        self._favoured = [node, self._mock, os.getpid()]
        for pid in self._favoured:
            _schedule(pid, os.SCHED_FIFO | os.SCHED_RESET_ON_FORK, self.PRIORITY)

    def end(self) -> None:
        for pid in self._favoured:
            _schedule(pid, os.SCHED_OTHER, 0)
        self._favoured = []


def _schedule(pid: int, policy: int, priority: int) -> None:
    """Every thread of ``pid`` (a scheduling policy is a thread's); gone ones skipped."""
    try:
        threads = [int(tid) for tid in os.listdir(f"/proc/{pid}/task")]
    except FileNotFoundError:
        return
    for tid in threads:
        try:
            os.sched_setscheduler(tid, policy, os.sched_param(priority))
        except ProcessLookupError:
            pass
        except PermissionError:
            raise SystemExit("--isolate needs the right to set real-time scheduling (root, or CAP_SYS_NICE)") from None


def machine_cpu() -> list[int]:
    """The machine's CPU ticks so far (/proc/stat): user, nice, system, idle, iowait,
    irq, softirq, steal."""
    return [int(field) for field in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]


def machine_use(before: list[int]) -> dict:
    """Since ``before``: how busy the machine's cores were (100 % = all of them), and the
    share the hypervisor took (steal): on a small machine a node's latency under churn
    is mostly its wait for a core, which this shows."""
    spent = [now - then for now, then in zip(machine_cpu(), before, strict=True)]
    total = sum(spent) or 1
    return {"cores": os.cpu_count(), "busy_pct": round((total - spent[3] - spent[4]) * 100 / total, 1),
            "steal_pct": round(spent[7] * 100 / total, 1)}


def cpu_seconds(pid: int) -> float:
    """User and system CPU seconds the process has used (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def py_spy(pid: int, out: Path, seconds: float) -> subprocess.Popen:
    """py-spy sampling ``pid`` (idle time included: a wait on the loop shows) into a
    collapsed-stack file, for ``seconds``."""
    return subprocess.Popen([str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(pid), "--rate", "500",
                             "--idle", "--format", "raw", "--duration", str(max(1, int(seconds))), "--output", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
