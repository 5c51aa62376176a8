"""Upstream HTTP transports side by side: Tollway's native client, aiohttp, pyreqwest and httpx.

Each transport is driven by the same closed loop in a process of its own (so the process's
CPU time is that transport's, its Rust or C threads included) against the same mock
upstream: ``concurrency`` tasks send a ~1 KB chat completion back to back, reading the whole
answer (non-streaming) or every chunk as it comes (streaming), for ``seconds`` after a
short warm-up that opens the pool's connections. Per run: requests/s, p50/p99 latency to
the last byte, and CPU µs per request (``time.process_time`` over the run / requests). The
loop, the payload and the mock are identical for all, so the differences are the
transports'. `overhead.py --suites transports` runs them alternately and prints the table;
this file is also the per-run child process:

    .venv/bin/python bench/transports.py native http://127.0.0.1:PORT/v1/chat/completions 16 3 [--stream]

pyreqwest and httpx are not Tollway dependencies: a transport whose package is missing is
skipped (``pip install -e '.[bench]'`` to include them).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

# The features the gateway needs from its upstream transport (issue 15 item 6 and the
# proxy's streaming), per transport, from each library's documentation and, for native,
# from tollway/providers/http and its tests. "no" means the gateway would have to build it.
FEATURES: dict[str, dict[str, tuple[str, str]]] = {
    "HTTP proxy, CONNECT for https": {
        "native": ("yes", "egress.py; tests/integration/test_egress.py through squid"), "aiohttp": ("yes", "proxy="),
        "pyreqwest": ("yes", "ProxyBuilder"), "httpx": ("yes", "proxy=")},
    "per-provider proxy + NO_PROXY": {
        "native": ("yes", "choose_proxy: names, domain suffixes, *, IPs, CIDR, :port"),
        "aiohttp": ("partial", "NO_PROXY from the environment only (trust_env)"),
        "pyreqwest": ("yes", "ProxyBuilder.no_proxy"), "httpx": ("yes", "mounts, or the environment")},
    "custom CA bundle": {
        "native": ("yes", "ssl.SSLContext(cafile): replaces the system roots"), "aiohttp": ("yes", "ssl.SSLContext"),
        "pyreqwest": ("partial", "add_root_certificate_pem adds to the built-in roots (rustls), cannot replace them"),
        "httpx": ("yes", "verify=SSLContext")},
    "mutual TLS": {
        "native": ("yes", "SSLContext.load_cert_chain"), "aiohttp": ("yes", "ssl.SSLContext"),
        "pyreqwest": ("yes", "identity_pem"), "httpx": ("yes", "cert= / SSLContext")},
    "HTTP/2": {"native": ("no", "HTTP/1.1 only"), "aiohttp": ("no", "HTTP/1.1 only"), "pyreqwest": ("yes", "http2()"),
               "httpx": ("yes", "http2=True with the h2 package")},
    "streaming, no buffering": {
        "native": ("yes", "reads pause above 256 KB unconsumed"), "aiohttp": ("yes", "StreamReader high water"),
        "pyreqwest": ("yes", "body_reader, streamed read buffer limit"), "httpx": ("yes", "aiter_raw")},
    "streamed upload": {
        "native": ("yes", "request_streaming"), "aiohttp": ("yes", "async iterable body"),
        "pyreqwest": ("yes", "body_stream"), "httpx": ("yes", "async iterable content")},
    "pool cap per origin": {
        "native": ("yes", "max_connections per origin, FIFO waiters, 4 s idle expiry"),
        "aiohttp": ("yes", "limit / limit_per_host, keepalive_timeout"),
        "pyreqwest": ("partial", "max_connections caps in-flight requests (client-wide); idle per host, idle timeout"),
        "httpx": ("yes", "Limits(max_connections, keepalive_expiry)")},
    "stale keep-alive retry (POST)": {
        "native": ("yes", "once, on a reused connection closed before a response byte"),
        "aiohttp": ("no", "retries idempotent methods only"),
        "pyreqwest": ("partial", "hyper retries only a request it had not started writing"),
        "httpx": ("no", "raises RemoteProtocolError")},
}

TRANSPORTS = ("native", "aiohttp", "pyreqwest", "httpx")
WARMUP_S = 0.5
PROMPT = "Summarise the following text in one sentence. " * 20  # ≈ 1 KB request body, as overhead.py sends
Send = Callable[[], Awaitable[int]]


def chat_body(stream: bool) -> bytes:
    """The chat completion every transport sends to the mock (16 tokens back)."""
    payload: dict[str, Any] = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 16}
    if stream:
        payload["stream"] = True
    return json.dumps(payload).encode()


async def _native(url: str, headers: dict[str, str], body: bytes, stream: bool, concurrency: int) -> tuple[Send, Any]:
    """Tollway's client used as `ProviderClient.post` uses it: a cached request prefix."""
    from tollway.providers.http import HTTPClient, encode_request, header_block, request_prefix, split_url

    client = HTTPClient(max_connections=concurrency)
    origin, target = split_url(url)
    data = encode_request(request_prefix("POST", target, header_block(origin, headers)), body)

    async def send() -> int:
        response = await (client.request(origin, data, idle=60) if stream else client.request(origin, data, total=60))
        try:
            if stream:
                async for _chunk in response.iter_chunks():
                    pass
            else:
                await response.read()
        finally:
            response.release()
        return response.status

    return send, client.close


async def _aiohttp(url: str, headers: dict[str, str], body: bytes, stream: bool, concurrency: int) -> tuple[Send, Any]:
    """aiohttp as the gateway's adapter used it: one session, no decompression."""
    import aiohttp

    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=0, ttl_dns_cache=300)
    session = aiohttp.ClientSession(connector=connector, auto_decompress=False)
    timeout = aiohttp.ClientTimeout(sock_read=60) if stream else aiohttp.ClientTimeout(total=60)

    async def send() -> int:
        async with session.post(url, data=body, headers=headers, timeout=timeout) as response:
            if stream:
                async for _chunk in response.content.iter_any():
                    pass
            else:
                await response.read()
            return response.status

    return send, session.close


async def _pyreqwest(url: str, headers: dict[str, str], body: bytes, stream: bool, concurrency: int) -> tuple[Send, Any]:
    """pyreqwest's async client (reqwest/hyper on a Tokio runtime), default runtime."""
    from datetime import timedelta

    from pyreqwest.client import ClientBuilder

    client = ClientBuilder().max_connections(concurrency).timeout(timedelta(seconds=60)).build()

    async def send() -> int:
        builder = client.post(url).headers(headers).body_bytes(body)
        if stream:
            async with builder.build_streamed() as response:
                reader = response.body_reader
                while await reader.read_chunk() is not None:
                    pass
                return response.status
        response = await builder.build().send()
        await response.bytes()
        return response.status

    return send, client.close


async def _httpx(url: str, headers: dict[str, str], body: bytes, stream: bool, concurrency: int) -> tuple[Send, Any]:
    """httpx's AsyncClient over httpcore, HTTP/1.1."""
    import httpx

    client = httpx.AsyncClient(limits=httpx.Limits(max_connections=concurrency), timeout=60)

    async def send() -> int:
        if stream:
            async with client.stream("POST", url, content=body, headers=headers) as response:
                async for _chunk in response.aiter_raw():
                    pass
                return response.status_code
        response = await client.post(url, content=body, headers=headers)
        return response.status_code

    return send, client.aclose


SETUPS = {"native": _native, "aiohttp": _aiohttp, "pyreqwest": _pyreqwest, "httpx": _httpx}


def available(name: str) -> bool:
    """Whether the transport's package is installed (pyreqwest and httpx are optional)."""
    module = {"pyreqwest": "pyreqwest", "httpx": "httpx"}.get(name)
    if module is None:
        return True
    try:
        __import__(module)
    except ImportError:
        return False
    return True


async def _loop(send: Send, concurrency: int, seconds: float, latencies: list[float] | None) -> int:
    """Closed loop for ``seconds``; appends each success's latency; returns failures."""
    deadline = time.perf_counter() + seconds
    failures = 0

    async def worker() -> None:
        nonlocal failures
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            try:
                status = await send()
            except Exception:  # a transport's own errors: counted, the run goes on
                failures += 1
                continue
            if status != 200:
                failures += 1
            elif latencies is not None:
                latencies.append(time.perf_counter() - started)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return failures


async def run(name: str, url: str, headers: dict[str, str], body: bytes, concurrency: int, seconds: float,
              stream: bool) -> dict:
    """One measured run of transport ``name`` (after a warm-up that fills its pool)."""
    send, close = await SETUPS[name](url, headers, body, stream, concurrency)
    try:
        await _loop(send, concurrency, WARMUP_S, None)
        latencies: list[float] = []
        cpu_before, started = time.process_time(), time.perf_counter()
        errors = await _loop(send, concurrency, seconds, latencies)
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_before
    finally:
        await close()
    latencies.sort()
    n = len(latencies)

    def percentile(fraction: float) -> float:
        return latencies[min(n - 1, int(n * fraction))] * 1000 if n else 0.0

    return {"n": n, "rps": n / elapsed, "p50_ms": percentile(0.50), "p99_ms": percentile(0.99), "errors": errors,
            "cpu_s": cpu, "cpu_us_per_req": cpu / n * 1e6 if n else None}


def main() -> None:
    parser = argparse.ArgumentParser(description="one measured run of one transport (a child of overhead.py)")
    parser.add_argument("transport", choices=TRANSPORTS)
    parser.add_argument("url")
    parser.add_argument("concurrency", type=int)
    parser.add_argument("seconds", type=float)
    parser.add_argument("--stream", action="store_true")
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()  # as the gateway runs
    except ImportError:
        pass
    headers = {"Content-Type": "application/json", "Authorization": "Bearer sk-bench", "Accept-Encoding": "identity"}
    result = asyncio.run(run(args.transport, args.url, headers, chat_body(args.stream), args.concurrency,
                             args.seconds, args.stream))
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
