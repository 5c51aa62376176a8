"""Normal traffic kept flowing while a test misbehaves against the same gateway: chat
completions through the official `openai` SDK, each on a new connection (a client that
already holds a connection would not notice a server that stopped accepting)."""

from __future__ import annotations

import statistics
import threading
import time

import openai

from tests.reliability.harness import HELLO

_MODEL = "openai/gpt-4o-mini"


def one_request(base_url: str, api_key: str = "unused", timeout_s: float = 10.0) -> float:
    """One chat completion on a fresh connection; its latency in seconds (raises on failure)."""
    started = time.perf_counter()
    with openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=0, timeout=timeout_s) as client:
        answer = client.chat.completions.create(model=_MODEL, messages=HELLO, max_tokens=4)  # type: ignore[arg-type]
    assert answer.choices[0].message.content
    return time.perf_counter() - started


def usual_latency(base_url: str, api_key: str = "unused", samples: int = 10) -> float:
    """The median latency of an unhindered request (after one to warm up)."""
    one_request(base_url, api_key)
    return statistics.median(one_request(base_url, api_key) for _ in range(samples))


class NormalTraffic(threading.Thread):
    """Requests one after another until `stop()`; latencies and failures recorded."""

    def __init__(self, base_url: str, api_key: str = "unused", pause_s: float = 0.02) -> None:
        super().__init__(daemon=True)
        self.base_url, self.api_key, self.pause_s = base_url, api_key, pause_s
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self._stopping = threading.Event()
        self._started_at: float | None = None

    def run(self) -> None:
        self._started_at = time.monotonic()
        while not self._stopping.is_set():
            try:
                self.latencies.append(one_request(self.base_url, self.api_key))
            except Exception as exc:
                self.failures.append(f"{type(exc).__name__}: {exc}")
            self._stopping.wait(self.pause_s)

    @property
    def completed(self) -> int:
        return len(self.latencies) + len(self.failures)

    def enough(self, at_least: int = 5, timeout_s: float = 60.0) -> bool:
        """Whether ``at_least`` requests have completed (or ``timeout_s`` has passed since
        the start): until then the abuse goes on, however slow the machine is."""
        if self._started_at is None:
            self._started_at = time.monotonic()
        return self.completed >= at_least or time.monotonic() - self._started_at > timeout_s

    def hold(self, at_least: int = 5, timeout_s: float = 60.0) -> None:
        """Wait until `enough`: the abuse, already in place, is held meanwhile."""
        while not self.enough(at_least, timeout_s):
            self._stopping.wait(0.05)

    def stop(self) -> NormalTraffic:
        self._stopping.set()
        self.join(30)
        return self

    def check(self, usual_s: float, at_least: int = 5) -> None:
        """Every request succeeded, and within its usual latency: the median at most a few
        times the usual one, none over two seconds more than usual (a shared CI machine
        has pauses of its own)."""
        assert not self.failures, f"{len(self.failures)} normal requests failed, e.g. {self.failures[:3]}"
        assert len(self.latencies) >= at_least, f"only {len(self.latencies)} normal requests completed"
        median = statistics.median(self.latencies)
        assert median <= max(4 * usual_s, usual_s + 0.25), f"median latency {median:.3f} s, usually {usual_s:.3f} s"
        assert max(self.latencies) <= usual_s + 2.0, f"slowest {max(self.latencies):.3f} s, usually {usual_s:.3f} s"
