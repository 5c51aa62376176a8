"""Shared load driver for the benchmarks: closed-loop HTTP load, bursts, process meters.

Nothing here knows about a particular gateway. `drive` runs ``concurrency`` workers that
send requests back to back for a fixed time and records each latency (to the last body
byte; for streams also to the first body byte). `burst` fires N requests at once and
returns their statuses. `ProcessMeter` reads CPU time and peak RSS of a process tree
from /proc, so a gateway's workers and helpers are all counted.

    from loadgen import drive, summarise   # scripts in bench/ have bench/ on sys.path
    result = await drive(url, headers, body, concurrency=16, seconds=3)
"""

from __future__ import annotations

import asyncio
import os
import socket
import statistics
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------- ports

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(url: str, timeout_s: float = 90, process: subprocess.Popen | None = None) -> None:
    """Wait until GET `url` answers (any status); fail early if `process` exits."""
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process {process.args!r} exited with {process.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"nothing answered at {url} within {timeout_s:.0f} s")


# --------------------------------------------------------------------------- load

def _percentile(sorted_values: list[float], fraction: float) -> float:
    if not sorted_values:
        return 0.0
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * fraction))]


async def drive(url: str, headers: dict, body: bytes, concurrency: int, seconds: float,
                stream: bool = False) -> dict:
    """Closed-loop load: ``concurrency`` workers each send requests back to back.

    Returns throughput of successful requests, latency percentiles in ms (to the last
    byte, and to the first body byte for streams), and the count of non-200 answers.
    """
    latencies: list[float] = []
    first_bytes: list[float] = []
    statuses: dict[int, int] = {}
    failures = 0
    deadline = time.perf_counter() + seconds
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=0, force_close=False)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout, auto_decompress=False) as session:

        async def worker() -> None:
            nonlocal failures
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                try:
                    async with session.post(url, data=body, headers=headers) as response:
                        if stream:
                            first = None
                            async for _chunk in response.content.iter_any():
                                if first is None:
                                    first = time.perf_counter()
                        else:
                            await response.read()
                        status = response.status
                except (aiohttp.ClientError, TimeoutError):
                    failures += 1
                    await asyncio.sleep(0.01)
                    continue
                ended = time.perf_counter()
                statuses[status] = statuses.get(status, 0) + 1
                if status != 200:
                    continue
                latencies.append(ended - started)
                if stream and first is not None:
                    first_bytes.append(first - started)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    first_bytes.sort()
    n = len(latencies)
    result = {
        "n": n, "seconds": elapsed, "rps": n / elapsed if elapsed else 0.0,
        "p50_ms": _percentile(latencies, 0.50) * 1000, "p99_ms": _percentile(latencies, 0.99) * 1000,
        "errors": sum(count for status, count in statuses.items() if status != 200) + failures,
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
    }
    if stream:
        result["ttfb_p50_ms"] = _percentile(first_bytes, 0.50) * 1000
    return result


async def burst(url: str, headers: dict, body: bytes, count: int,
                timeout_s: float = 60) -> list[tuple[int, dict, bytes, float]]:
    """Send `count` requests at the same moment (one connection each).

    Returns (status, headers, body, seconds) per request; status 0 means no answer
    within `timeout_s` (the gateway held the request).
    """
    connector = aiohttp.TCPConnector(limit=count, limit_per_host=0)
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        gate = asyncio.Event()

        async def one() -> tuple[int, dict, bytes, float]:
            await gate.wait()
            started = time.perf_counter()
            try:
                async with session.post(url, data=body, headers=headers) as response:
                    return (response.status, dict(response.headers), await response.read(),
                            time.perf_counter() - started)
            except (TimeoutError, aiohttp.ClientError) as exc:
                return 0, {}, repr(exc).encode(), time.perf_counter() - started

        tasks = [asyncio.create_task(one()) for _ in range(count)]
        await asyncio.sleep(0.05)  # every task is parked on the gate
        gate.set()
        return list(await asyncio.gather(*tasks))


# --------------------------------------------------------------------------- statistics

SUMMARY_FIELDS = ("rps", "p50_ms", "p99_ms", "ttfb_p50_ms", "cpu_s_per_1k", "rss_mb")


def summarise(runs: list[dict]) -> dict:
    """Median of each field over the runs, with min and max (the spread)."""
    out: dict = {"repeats": len(runs)}
    for field in SUMMARY_FIELDS:
        values = [r[field] for r in runs if r.get(field) is not None]
        if not values:
            continue
        out[field] = statistics.median(values)
        out[field + "_min"] = min(values)
        out[field + "_max"] = max(values)
    out["errors"] = sum(r.get("errors", 0) for r in runs)
    return out


# --------------------------------------------------------------------------- process meters

def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    return children


def process_tree(root: int) -> list[int]:
    """`root` and all its live descendants."""
    children = _children_map()
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, ()))
    return found


def _cpu_ticks(pid: int) -> int:
    """utime + stime of `pid` plus those of its children that were already reaped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    fields = stat[stat.rindex(")") + 2:].split()
    utime, stime, cutime, cstime = (int(fields[i]) for i in (11, 12, 13, 14))
    return utime + stime + cutime + cstime


def _hwm_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


@dataclass
class ProcessMeter:
    """CPU seconds and peak resident memory of a process tree (a gateway and its workers)."""

    root: int

    def cpu_seconds(self) -> float:
        return sum(_cpu_ticks(pid) for pid in process_tree(self.root)) / CLOCK_TICKS

    def peak_rss_mb(self) -> float:
        """Sum of VmHWM over the live processes of the tree (peak per process, added up)."""
        return sum(_hwm_kb(pid) for pid in process_tree(self.root)) / 1024

    def processes(self) -> int:
        return len(process_tree(self.root))


async def metered_drive(meter: ProcessMeter | None, url: str, headers: dict, body: bytes, concurrency: int,
                        seconds: float, stream: bool = False) -> dict:
    """`drive`, plus the CPU the metered process tree spent per 1,000 successful requests and its peak RSS."""
    before = meter.cpu_seconds() if meter else 0.0
    result = await drive(url, headers, body, concurrency, seconds, stream)
    if meter is not None:
        spent = meter.cpu_seconds() - before
        result["cpu_s"] = spent
        result["cpu_s_per_1k"] = spent / result["n"] * 1000 if result["n"] else None
        result["rss_mb"] = meter.peak_rss_mb()
    return result


def medians_text(summary: dict) -> str:
    """req/s, p50 and p99 of a `summarise` result, each ± half its range, as table columns."""
    def spread(field: str) -> float:
        return (summary[field + "_max"] - summary[field + "_min"]) / 2

    return (f"{summary['rps']:>8.0f} ±{spread('rps'):<5.0f}{summary['p50_ms']:>7.3f} ±{spread('p50_ms'):<5.3f}"
            f"{summary['p99_ms']:>7.2f} ±{spread('p99_ms'):<5.2f}")


def add_run_arguments(parser, concurrency: list[int]) -> None:
    """The options every side-by-side benchmark takes: how long, how often, at which concurrency."""
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--concurrency", type=lambda s: [int(x) for x in s.split(",")], default=concurrency)
    parser.add_argument("--json", type=Path, help="also write the raw figures here")
