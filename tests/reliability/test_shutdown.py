"""Shutdown of a real `python -m tollway serve` process.

SIGTERM: the listening socket closes at once, requests in flight (streams included)
finish within ``shutdown_grace_period``, a stream still running then is cut and charged
for what it produced, usage and request logs are flushed, and the exit code is 0.
SIGKILL: at most the last ``flush_interval`` of usage is lost; what was flushed survives.
"""

from __future__ import annotations

import signal
import socket
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import httpx2

from tests.reliability.harness import HELLO, ServedGateway, control, eventually
from tests.support.gateway import mock_providers, start_gateway
from tollway.governance.engine import hash_key
from tollway.governance.model import request_counter

VK = "tw-reliability-shutdown-0123456789ab"


def _config(database: Path, mock_url: str, **extra: Any) -> dict[str, Any]:
    limits = {"request_max_limit": 10_000, "request_reset_duration": "1h",
              "token_max_limit": 10**9, "token_reset_duration": "1h"}
    return {"database_url": f"sqlite:///{database}", "management_api": False, "log_level": "info",
            "providers": mock_providers(mock_url),
            "governance": {"virtual_keys": [{"id": "vk-shutdown", "name": "shutdown", "value": VK, "rate_limit": limits}]},
            **extra}


def _stored(database: Path) -> tuple[int, int, int]:
    """(request log rows, requests and tokens charged to the key) as stored."""
    with sqlite3.connect(database) as connection:
        rows = connection.execute("SELECT count(*) FROM request_logs").fetchone()[0]
        requests, tokens = connection.execute(
            "SELECT r.request_current_usage, r.token_current_usage FROM rate_limits r "
            "JOIN virtual_keys k ON k.rate_limit_id = r.id WHERE k.id = 'vk-shutdown'").fetchone()
    return int(rows), int(requests), int(tokens)


class _Stream(threading.Thread):
    """One streamed request read to its end in a thread; ``text`` is what arrived."""

    def __init__(self, url: str, max_tokens: int | None) -> None:
        super().__init__(daemon=True)
        body: dict[str, Any] = {"model": "openai/gpt-4o-mini", "messages": HELLO, "stream": True}
        if max_tokens is not None:
            body["max_tokens"] = max_tokens
        self.url, self.body = url, body
        self.started = threading.Event()
        self.text = ""
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with httpx2.stream("POST", self.url + "/v1/chat/completions", json=self.body,
                               headers={"x-tollway-vk": VK}, timeout=30) as response:
                self.started.set()
                for chunk in response.iter_text():
                    self.text += chunk
        except httpx2.HTTPError as exc:  # the cut stream
            self.error = exc
        finally:
            self.started.set()


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return True
    return False


def test_sigterm_drains_streams_within_the_grace_period_flushes_and_exits_0(mock, tmp_path: Path) -> None:
    database = tmp_path / "tollway.db"
    # One-hour flushes: only the flush at shutdown can have written the usage.
    served = ServedGateway(_config(database, mock.url, flush_interval="1h", shutdown_grace_period="3s"), tmp_path)
    served.start()
    control(mock.url, "POST", "/_mock/settings", {"chunk_delay_ms": 100, "completion_tokens": 100})
    short = [_Stream(served.url, max_tokens=8) for _ in range(4)]  # about 1 s each
    long = _Stream(served.url, max_tokens=None)  # 100 chunks: 10 s, past the grace period
    plain: dict[str, Any] = {}

    def plain_request() -> None:
        plain["response"] = httpx2.post(served.url + "/v1/chat/completions", headers={"x-tollway-vk": VK},
                                        json={"model": "openai/gpt-4o-mini", "messages": HELLO}, timeout=30)

    control(mock.url, "POST", "/_mock/faults", {"delay_ms": 1500, "count": 1})  # a slow plain answer
    plain_thread = threading.Thread(target=plain_request, daemon=True)
    plain_thread.start()
    eventually(lambda: control(mock.url, "GET", "/_mock/stats")["in_flight"], lambda n: n == 1)
    for stream in [*short, long]:
        stream.start()
    for stream in [*short, long]:
        assert stream.started.wait(10)
    assert eventually(lambda: control(mock.url, "GET", "/_mock/stats")["in_flight"], lambda n: n == 6) == 6

    served.signal(signal.SIGTERM)
    term_at = time.monotonic()
    assert eventually(lambda: _refused(served.port), bool, timeout_s=2)  # no new connections
    code = served.wait(15)
    took = time.monotonic() - term_at
    for stream in short:
        stream.join(5)
        assert stream.error is None and stream.text.rstrip().endswith("data: [DONE]")  # finished whole
    plain_thread.join(5)
    assert plain["response"].status_code == 200
    long.join(5)
    assert long.error is None and long.text.count("data: ") >= 20  # cut after ~3 s of chunks ...
    assert "[DONE]" not in long.text and "the gateway is shutting down" in long.text  # ... with an error event

    assert code == 0, served.stderr()
    assert 3 <= took < 8
    rows, requests, tokens = _stored(database)
    assert rows == 6  # every request's log record, the cut stream's too
    assert requests == 6
    produced = long.text.count('"content":"tok')  # the long stream is charged for what it produced
    assert tokens >= 4 * 8 + 16 + produced  # short streams' and the plain answer's completions, at least
    assert "Traceback" not in served.stderr()


def test_after_sigkill_usage_flushed_before_the_kill_survives(mock, tmp_path: Path) -> None:
    database = tmp_path / "tollway.db"
    config = _config(database, mock.url, flush_interval="1s")
    served = ServedGateway(config, tmp_path).start()
    with httpx2.Client(headers={"x-tollway-vk": VK}, timeout=10) as client:
        for _ in range(5):
            assert client.post(served.url + "/v1/chat/completions",
                               json={"model": "openai/gpt-4o-mini", "messages": HELLO, "max_tokens": 2}).status_code == 200
        assert eventually(lambda: _stored(database)[1], lambda n: n == 5, timeout_s=5) == 5  # flushed
        for _ in range(3):  # within the next flush interval: these may be lost
            client.post(served.url + "/v1/chat/completions", json={"model": "openai/gpt-4o-mini", "messages": HELLO})
    served.signal(signal.SIGKILL)
    assert served.wait(10) == -signal.SIGKILL

    _, requests, _ = _stored(database)
    assert 5 <= requests <= 8
    restarted = start_gateway(config)  # the next start counts on from what was stored
    try:
        limit = restarted.runtime.snapshot.keys_by_hash[hash_key(VK)].limits.rate_limit
        assert restarted.counters()[request_counter(limit.id)].used == requests
    finally:
        restarted.stop()
