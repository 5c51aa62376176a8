"""Client faults: a client that hangs up mid-stream cancels the upstream call, a client
that stops reading holds back only its own stream (back-pressure reaches the upstream,
nothing is buffered without bound, other clients are served as fast as before), and a
body over the limit is refused with 413 before it is read."""

from __future__ import annotations

import socket
import statistics
import time

import httpx2
import orjson

from tests.reliability.harness import HELLO, control, eventually, prompt_estimate, upstream_pool
from tests.support.gateway import RunningGateway, mock_providers
from tollway.governance.engine import hash_key
from tollway.governance.model import request_counter, token_counter

VK = "tw-reliability-clients-0123456789ab"
HUNDRED_MB = 100 * 1024 * 1024


def _config(mock_url: str, **extra) -> dict:
    limits = {"token_max_limit": 10**9, "token_reset_duration": "1h", "request_max_limit": 10_000,
              "request_reset_duration": "1h"}
    return {"providers": mock_providers(mock_url), "admin_token": "admin-token-reliability-0123456789",
            "governance": {"virtual_keys": [{"id": "vk-clients", "name": "clients", "value": VK, "rate_limit": limits}]},
            **extra}


def _raw_request(path: str, body: bytes, headers: dict[str, str] | None = None) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json",
             *(f"{name}: {value}" for name, value in (headers or {}).items())]
    if not any(name.lower() in ("content-length", "transfer-encoding") for name in headers or {}):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def _connect(gateway: RunningGateway, receive_buffer: int | None = None) -> socket.socket:
    sock = socket.socket()
    if receive_buffer:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.settimeout(5)
    sock.connect(("127.0.0.1", gateway.server.port))
    return sock


def _read_head(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def _stream_body() -> bytes:
    return orjson.dumps({"model": "openai/gpt-4o-mini", "messages": HELLO, "stream": True})


def _usage(gateway: RunningGateway) -> tuple[int, int]:
    limit = gateway.runtime.snapshot.keys_by_hash[hash_key(VK)].limits.rate_limit
    counters = gateway.counters()
    return counters[token_counter(limit.id)].used, counters[request_counter(limit.id)].used


def test_a_client_hanging_up_mid_stream_cancels_the_upstream_at_once(gateway, mock) -> None:
    running = gateway(_config(mock.url))
    control(mock.url, "POST", "/_mock/settings", {"chunk_delay_ms": 100, "completion_tokens": 100})  # a 10 s stream
    sock = _connect(running)
    sock.sendall(_raw_request("/v1/chat/completions", _stream_body(), {"x-tollway-vk": VK}))
    head = _read_head(sock)
    assert head.startswith(b"HTTP/1.1 200")
    time.sleep(0.35)  # a few chunks go by
    sock.close()
    closed_at = time.monotonic()
    stats = eventually(lambda: control(mock.url, "GET", "/_mock/stats"), lambda s: s["streams_cancelled"] == 1)
    assert stats["streams_cancelled"] == 1 and stats["streams_completed"] == 0
    assert time.monotonic() - closed_at < 1.5  # not the 10 s the stream had left
    tokens, requests = _usage(running)
    assert requests == 1 and 0 < tokens - prompt_estimate(orjson.loads(_stream_body())) < 100  # produced, not reserved
    assert running.runtime.enforcer.reservations_in_flight == 0
    open_, idle = upstream_pool(running)
    assert open_ == idle  # the cancelled exchange's connection was dropped, not kept checked out


def test_a_client_that_stops_reading_holds_back_only_its_own_stream(gateway, mock) -> None:
    running = gateway(_config(mock.url))
    client = httpx2.Client(timeout=10)

    def latencies(count: int) -> list[float]:
        took = []
        for _ in range(count):
            started = time.perf_counter()
            reply = client.post(running.v1 + "/chat/completions", json={"model": "openai/gpt-4o-mini", "messages": HELLO,
                                                                         "max_tokens": 4})
            assert reply.status_code == 200
            took.append(time.perf_counter() - started)
        return took

    before = latencies(20)
    # A stream far larger than every buffer between the mock and the client (~50 MB).
    control(mock.url, "POST", "/_mock/settings", {"completion_tokens": 200_000})
    stalled = _connect(running, receive_buffer=4096)
    stalled.sendall(_raw_request("/v1/chat/completions", _stream_body(), {"x-tollway-vk": VK}))
    assert _read_head(stalled).startswith(b"HTTP/1.1 200")
    time.sleep(1.0)  # the buffers fill, then everything upstream of the client waits
    control(mock.url, "POST", "/_mock/settings", {"completion_tokens": 16})
    during = latencies(20)
    stats = control(mock.url, "GET", "/_mock/stats")
    print(f"\nother clients' latency: before {statistics.median(before) * 1000:.1f} ms median, "
          f"{max(before) * 1000:.1f} ms max; while one client stalls {statistics.median(during) * 1000:.1f} ms median, "
          f"{max(during) * 1000:.1f} ms max")
    assert stats["streams_completed"] == 0 and stats["in_flight"] == 1  # back-pressure reached the upstream
    assert max(during) < max(0.5, 10 * max(before))
    assert statistics.median(during) < max(0.05, 3 * statistics.median(before))
    stalled.close()
    stats = eventually(lambda: control(mock.url, "GET", "/_mock/stats"), lambda s: s["streams_cancelled"] == 1)
    assert stats["streams_cancelled"] == 1
    eventually(lambda: running.runtime.enforcer.reservations_in_flight, lambda n: n == 0)
    assert running.runtime.enforcer.reservations_in_flight == 0
    client.close()


def _answer_within(sock: socket.socket, seconds: float) -> tuple[bytes, float]:
    started = time.monotonic()
    sock.settimeout(seconds)
    head = _read_head(sock)
    return head, time.monotonic() - started


def test_a_declared_100_mb_body_gets_413_at_once_on_every_route(gateway, mock) -> None:
    running = gateway(_config(mock.url))
    for path in ("/v1/chat/completions", "/v1/messages", "/v1/embeddings", "/api/governance/teams"):
        sock = _connect(running)
        sock.sendall(_raw_request(path, b'{"model": "op', {"Content-Length": str(HUNDRED_MB),
                                                            "Authorization": "Bearer admin-token-reliability-0123456789"}))
        head, took = _answer_within(sock, 3)
        sock.close()
        assert head.startswith(b"HTTP/1.1 413"), (path, head)
        assert took < 1, (path, took)  # nothing waited for the 100 MB that never came
    assert mock.mock.state.stats.requests == 0


def test_a_chunked_body_is_refused_once_it_passes_the_limit(gateway, mock) -> None:
    running = gateway(_config(mock.url, max_body_bytes=10_000))
    for path in ("/v1/chat/completions", "/api/governance/teams"):
        sock = _connect(running)
        sock.sendall(_raw_request(path, b"", {"Transfer-Encoding": "chunked",
                                               "Authorization": "Bearer admin-token-reliability-0123456789"}))
        piece = b"x" * 4096
        for _ in range(4):  # 16 KiB of a body that would never end
            sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
        head, took = _answer_within(sock, 3)
        sock.close()
        assert head.startswith(b"HTTP/1.1 413"), (path, head)
        assert took < 1
