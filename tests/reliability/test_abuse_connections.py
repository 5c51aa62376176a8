"""Clients that misbehave at the connection level, against a real `tollway serve`:
idle connections by the thousand at the file-descriptor limit, a request head of many
MiB, heads that trickle in or never come, connections held past keep-alive, and the
connection cap. Each holds the abuse while normal traffic (tests.reliability.traffic)
must keep flowing within its usual latency.
"""

from __future__ import annotations

import resource
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.api.support import MockThread
from tests.reliability.harness import ServedGateway, control, eventually
from tests.reliability.traffic import NormalTraffic, one_request, usual_latency
from tests.support.gateway import mock_providers

IDLE_SOCKETS = 2000
GATEWAY_FD_LIMIT = 256  # far below IDLE_SOCKETS: without a cap the gateway runs out of descriptors


def _config(tmp_path: Path, mock_url: str, **server: Any) -> dict[str, Any]:
    return {"database_url": f"sqlite:///{tmp_path / 'gateway.db'}", "management_api": False,
            "providers": mock_providers(mock_url), "server": server}


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Any]:
    started: list[ServedGateway] = []

    def start(config: dict[str, Any], fd_limit: int | tuple[int, int] | None = None) -> ServedGateway:
        directory = tmp_path / f"gateway-{len(started)}"  # its own log files
        directory.mkdir()
        gateway = ServedGateway(config, directory, fd_limit=fd_limit).start()
        started.append(gateway)
        return gateway

    yield start
    for gateway in started:
        gateway.kill()


def _connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def _closed_after(sock: socket.socket, limit_s: float) -> tuple[bytes, float]:
    """What the server sent before closing ``sock``, and when it closed (seconds)."""
    started = time.monotonic()
    sock.settimeout(limit_s)
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except ConnectionResetError:
        pass
    return received, time.monotonic() - started


def test_thousands_of_idle_connections_at_the_fd_limit_do_not_stop_normal_requests(serve, mock: MockThread, tmp_path: Path) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < IDLE_SOCKETS + 200:
        pytest.skip(f"this test holds {IDLE_SOCKETS} sockets; the open-file limit here is {hard}")
    if soft < IDLE_SOCKETS + 200:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    gateway = serve(_config(tmp_path, mock.url), fd_limit=GATEWAY_FD_LIMIT)
    assert "at most 96 connections per worker" in gateway.stderr()
    usual = usual_latency(gateway.url + "/v1")
    traffic = NormalTraffic(gateway.url + "/v1")
    traffic.start()
    idle: list[socket.socket] = []
    try:
        for _ in range(IDLE_SOCKETS):
            idle.append(_connect(gateway.port))
        traffic.hold()  # the abuse held while normal requests go on
    finally:
        traffic.stop()
        for sock in idle:
            sock.close()
    traffic.check(usual)
    assert one_request(gateway.url + "/v1") < usual + 1.0
    assert "Too many open files" not in gateway.stderr()


def _send_huge_head(port: int, mib: int) -> bytes:
    """A request head with one header of ``mib`` MiB; what the gateway answered."""
    sock = _connect(port)
    sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-Padding: ")
    filler = b"a" * (1 << 20)
    try:
        for _ in range(mib):
            sock.sendall(filler)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the gateway stopped reading after its answer
    return _closed_after(sock, 10)[0]


def test_a_64_mib_request_head_gets_431_without_being_held_in_memory(serve, mock: MockThread, tmp_path: Path) -> None:
    gateway = serve(_config(tmp_path, mock.url))
    usual = usual_latency(gateway.url + "/v1")
    rss_before = gateway.rss_bytes()
    traffic = NormalTraffic(gateway.url + "/v1")
    traffic.start()
    answers: list[bytes] = []
    try:
        while not answers or not traffic.enough():  # the abuse held, again and again
            answers.append(_send_huge_head(gateway.port, 64))
    finally:
        traffic.stop()
    for answer in answers:
        assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
        assert b"65536 bytes" in answer
    growth = gateway.rss_bytes() - rss_before
    assert growth < 8 << 20, f"RSS grew by {growth / 2**20:.1f} MiB after {len(answers)} heads of 64 MiB"
    traffic.check(usual)


def test_a_head_of_many_small_headers_counts_as_a_whole(serve, mock: MockThread, tmp_path: Path) -> None:
    """No single header is long; together they are: still 431 (the limit is on the head)."""
    gateway = serve(_config(tmp_path, mock.url, max_request_head_bytes=8192))
    sock = _connect(gateway.port)
    lines = [b"X-H%d: %s\r\n" % (i, b"v" * 40) for i in range(400)]  # 20 KiB together
    sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n" + b"".join(lines))
    answer, _ = _closed_after(sock, 10)
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
    # A head under the limit is served.
    ok = _connect(gateway.port)
    ok.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + b"".join(lines[:100]) + b"\r\n")
    assert _closed_after(ok, 10)[0].startswith(b"HTTP/1.1 200 ")


def test_connections_that_send_nothing_or_trickle_their_head_are_closed(serve, mock: MockThread, tmp_path: Path) -> None:
    gateway = serve(_config(tmp_path, mock.url, header_read_timeout="1s", keep_alive_timeout="1s"))
    usual = usual_latency(gateway.url + "/v1")
    silent = _connect(gateway.port)
    trickling = _connect(gateway.port)
    trickle_result: dict[str, Any] = {}

    def trickle() -> None:
        """Slowloris: a byte of head every 100 ms, never the end of it."""
        started = time.monotonic()
        trickling.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        try:
            while time.monotonic() - started < 5:
                trickling.sendall(b"X")
                time.sleep(0.1)
        except (BrokenPipeError, ConnectionResetError):
            pass
        trickle_result["closed_after"] = time.monotonic() - started

    trickler = threading.Thread(target=trickle, daemon=True)
    traffic = NormalTraffic(gateway.url + "/v1")
    traffic.start()
    trickler.start()
    try:
        nothing, silent_s = _closed_after(silent, 5)
        trickled, _ = _closed_after(trickling, 5)
        trickler.join(10)
        traffic.hold()
    finally:
        traffic.stop()
    assert nothing == b"" and 0.8 <= silent_s <= 3, (nothing, silent_s)
    assert trickled.startswith(b"HTTP/1.1 408 "), trickled[:200]
    assert trickle_result["closed_after"] < 4
    traffic.check(usual)


def test_a_kept_alive_connection_is_closed_when_idle(serve, mock: MockThread, tmp_path: Path) -> None:
    gateway = serve(_config(tmp_path, mock.url, header_read_timeout="10s", keep_alive_timeout="1s"))
    sock = _connect(gateway.port)
    sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    answer, idle_s = _closed_after(sock, 5)
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert 0.8 <= idle_s <= 3


def test_at_the_connection_cap_busy_connections_keep_theirs_and_newcomers_get_503(serve, mock: MockThread, tmp_path: Path) -> None:
    """Idle connections make room at the cap; busy ones never do: with every connection
    busy, a new one is answered 503 with Retry-After, and served again once one ends."""
    control(mock.url, "POST", "/_mock/settings", {"latency_ms": 3000})
    gateway = serve(_config(tmp_path, mock.url, max_connections=16))
    busy = [threading.Thread(target=one_request, args=(gateway.url + "/v1",), daemon=True) for _ in range(16)]
    for thread in busy:
        thread.start()
    stats = eventually(lambda: control(mock.url, "GET", "/_mock/stats"), lambda s: s["in_flight"] == 16, 20)
    assert stats["in_flight"] == 16  # all 16 wait on the slow upstream: none is idle
    refused = _connect(gateway.port)
    answer, _ = _closed_after(refused, 5)
    assert answer.startswith(b"HTTP/1.1 503 "), answer[:200]
    assert b"retry-after: 1" in answer.lower()
    for thread in busy:
        thread.join(10)
    control(mock.url, "POST", "/_mock/settings", {"latency_ms": 0})
    assert one_request(gateway.url + "/v1") < 2


def test_the_soft_fd_limit_is_raised_to_the_hard_one_at_start_and_the_cap_fits_it(serve, mock: MockThread, tmp_path: Path) -> None:
    raised = serve(_config(tmp_path, mock.url), fd_limit=(256, 1024))
    assert "raised the open-file limit (RLIMIT_NOFILE) from 256 to 1024" in raised.stderr()
    assert "at most 480 connections per worker" in raised.stderr()
    limits = [line for line in Path(f"/proc/{raised.pid}/limits").read_text().splitlines()
              if line.startswith("Max open files")]
    assert limits[0].split()[3:5] == ["1024", "1024"]
    raised.kill()
    kept = serve(_config(tmp_path, mock.url, raise_fd_limit=False), fd_limit=(256, 1024))
    assert "raised the open-file limit" not in kept.stderr()
    assert "open-file limit 256 (hard 1024): at most 96 connections per worker" in kept.stderr()


def test_a_body_that_stops_arriving_gets_408_and_the_connection_closes(serve, mock: MockThread, tmp_path: Path) -> None:
    gateway = serve(_config(tmp_path, mock.url, body_read_timeout="1s"))
    usual = usual_latency(gateway.url + "/v1")
    traffic = NormalTraffic(gateway.url + "/v1")
    traffic.start()
    try:
        stalled = _connect(gateway.port)
        stalled.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                        b"Content-Length: 1000\r\n\r\n")
        time.sleep(0.2)  # the head in one read, the start of the body in another
        stalled.sendall(b'{"model": "openai/gpt-4o-mini", ')
        answer, stalled_s = _closed_after(stalled, 10)
        # A slow body that keeps coming is not cut: 10 bytes every 0.3 s for 2 s.
        slow = _connect(gateway.port)
        body = b'{"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "Hello"}], "max_tokens": 4}'
        slow.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(body))
        for start in range(0, len(body), 10):
            time.sleep(0.3)
            slow.sendall(body[start:start + 10])
        slow_answer, _ = _closed_after(slow, 10)
        traffic.hold()
    finally:
        traffic.stop()
    assert answer.startswith(b"HTTP/1.1 408 ") and b"request body stopped arriving" in answer, answer[:200]
    assert stalled_s < 3
    assert slow_answer.startswith(b"HTTP/1.1 200 "), slow_answer[:200]
    traffic.check(usual)
