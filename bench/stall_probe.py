"""Where a gateway's event loop stalls: run ``tollway`` under a probe that notes how late
a 1 ms heartbeat on the loop runs (with the main thread's CPU time across the gap, which
tells the process's own work from a wait for a core), samples the main thread's stack
while the loop is late, and times the garbage collector's pauses (py-spy is not
available everywhere; the gateway runs on uvloop, whose callbacks cannot be wrapped).

    python bench/stall_probe.py serve --config gw.yaml --port 8080   # like `python -m tollway`

``TOLLWAY_STALL_REPORT`` names the JSON file written at exit (and every 5 s): the late
beats over ``TOLLWAY_STALL_MS`` (default 3) as (wall, CPU) ms, the sampled stacks
(innermost frame, then tollway / SQLAlchemy / driver frames; most frequent first) and
the GC pauses by generation. The probe costs a callback a millisecond and a sampling
thread: compare runs taken with it against each other, not against unprobed runs.
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import gc
import json
import os
import runpy
import sys
import threading
import time
from typing import Any

THRESHOLD_S = float(os.environ.get("TOLLWAY_STALL_MS", "3")) / 1000
REPORT = os.environ.get("TOLLWAY_STALL_REPORT", "stall-report.json")
SAMPLE_EVERY_S = 0.001
LONG_S = 0.02  # stalls longer than this are listed one by one
_INTERESTING = ("tollway", "sqlalchemy", "immutables", "asyncpg", "aiosqlite", "fastapi", "starlette", "pydantic")


class Probe:
    """Loop stalls (a heartbeat's lateness), stack samples while the loop is stalled, GC
    pauses. The gateway runs on uvloop, whose callbacks cannot be wrapped: a callback
    scheduled every millisecond notes when it ran, and a thread samples the main
    thread's stack whenever that note is older than the threshold."""

    def __init__(self) -> None:
        self.started = 0.0  # when the runtime finished starting (stalls before are not counted)
        self.beat = 0.0
        self.beat_cpu = 0.0  # the main thread's CPU time at the last beat
        self.beats = 0
        self.stall_ms: list[float] = []
        self.samples: collections.Counter[str] = collections.Counter()
        self.gc_ms: collections.defaultdict[int, list[float]] = collections.defaultdict(list)
        self._gc_started = 0.0
        # Stalls over LONG_MS one by one: when (s after the start), how long, and what the
        # sampler saw during that stall alone (the samples above are all stalls together).
        self.long: list[dict[str, Any]] = []
        self._current: collections.Counter[str] = collections.Counter()
        self._gc_in_stall_ms = 0.0
        self.main = threading.main_thread().ident

    def install(self) -> None:
        from tollway.server.runtime import Runtime

        original = Runtime.start
        probe = self

        async def start(runtime: Any) -> None:
            await original(runtime)
            probe.started = probe.beat = time.perf_counter()
            asyncio.get_running_loop().call_soon(probe._heartbeat)

        Runtime.start = start  # type: ignore[method-assign]
        gc.callbacks.append(self._gc)
        sys.setswitchinterval(SAMPLE_EVERY_S)  # the sampler gets the GIL while the loop is busy
        threading.Thread(target=self._sample, daemon=True, name="stall-probe").start()
        threading.Thread(target=self._dump_every, daemon=True, name="stall-dump").start()
        atexit.register(self.dump)

    def _heartbeat(self) -> None:
        now, cpu = time.perf_counter(), time.thread_time()
        late = now - self.beat - SAMPLE_EVERY_S
        if late > THRESHOLD_S:
            # With the main thread's CPU time in the gap: about the gap when the loop was
            # busy; much less when the process waited for a core (a loaded machine) or the GIL.
            self.stall_ms.append((round(late * 1000, 1), round((cpu - self.beat_cpu) * 1000, 1)))
            if late > LONG_S:
                self.long.append({"at_s": round(self.beat - self.started, 2), "wall_ms": round(late * 1000, 1),
                                  "cpu_ms": round((cpu - self.beat_cpu) * 1000, 1),
                                  "gc_ms": round(self._gc_in_stall_ms, 1),
                                  "stacks": [f"{n}× {stack}" for stack, n in self._current.most_common(3)]})
        self._current = collections.Counter()
        self._gc_in_stall_ms = 0.0
        self.beat, self.beat_cpu = now, cpu
        self.beats += 1
        asyncio.get_running_loop().call_later(SAMPLE_EVERY_S, self._heartbeat)

    def _gc(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
        elif self._gc_started and self.started:
            pause_ms = (time.perf_counter() - self._gc_started) * 1000
            self.gc_ms[info["generation"]].append(round(pause_ms, 2))
            self._gc_in_stall_ms += pause_ms

    def _sample(self) -> None:
        while True:
            time.sleep(SAMPLE_EVERY_S)
            if not self.started or time.perf_counter() - self.beat < THRESHOLD_S:
                continue
            frame = sys._current_frames().get(self.main)
            stack = [] if frame is None else [f"[{_short(frame.f_code.co_filename)}:{frame.f_code.co_name}]"]
            while frame is not None and len(stack) < 7:
                path = frame.f_code.co_filename
                if any(part in path for part in _INTERESTING):
                    stack.append(f"{_short(path)}:{frame.f_code.co_name}:{frame.f_lineno}")
                frame = frame.f_back
            self.samples[" < ".join(stack) or "?"] += 1
            self._current[" < ".join(stack) or "?"] += 1

    def _dump_every(self) -> None:
        while True:
            time.sleep(5)
            self.dump()

    def dump(self) -> None:
        gc_summary = {gen: {"n": len(ms), "max_ms": max(ms), "total_ms": round(sum(ms), 1),
                            "over_3ms": sorted((m for m in ms if m > 3), reverse=True)[:20]}
                      for gen, ms in self.gc_ms.items() if ms}
        report = {
            "beats": self.beats, "threshold_ms": THRESHOLD_S * 1000,
            "stalls": {"n": len(self.stall_ms), "worst_ms_wall_cpu": sorted(self.stall_ms, reverse=True)[:40],
                       "cpu_bound_over_5ms": sorted((s for s in self.stall_ms if s[1] > 5), reverse=True)[:40]},
            "samples": [{"stack": stack, "n": n} for stack, n in self.samples.most_common(60)],
            "gc": gc_summary,
            "long_stalls": self.long[-50:],
        }
        with open(REPORT, "w") as out:
            json.dump(report, out, indent=1)


def _short(path: str) -> str:
    for part in _INTERESTING:
        at = path.find(f"/{part}/")
        if at >= 0:
            return path[at + 1:]
    return path.rsplit("/", 1)[-1]


if __name__ == "__main__":
    Probe().install()
    sys.argv = ["tollway", *sys.argv[1:]]
    runpy.run_module("tollway", run_name="__main__", alter_sys=True)
