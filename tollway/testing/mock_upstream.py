"""The mock upstream provider: a real aiohttp server speaking the OpenAI (chat, completions,
embeddings, Responses), Azure OpenAI, Anthropic, Gemini, Bedrock and Vertex AI wire formats (streaming included), with a
control API for settings, faults, recorded requests and counters. It is the only mock in the project: integration tests and
benchmarks point the gateway (or an SDK) at it.

    mock = await start_mock_upstream()
    client = openai.AsyncOpenAI(base_url=mock.url + "/v1", api_key="x")
    ...
    await mock.close()

Content rules are in `mock_content`, the control API in `mock_control`.
"""

from __future__ import annotations

import asyncio
import gc
import signal
import ssl
from collections.abc import Callable
from types import TracebackType

from aiohttp import web

try:
    import uvloop
except ImportError:  # uvloop is optional (absent on Windows)
    uvloop = None

from tollway.testing import mock_anthropic, mock_openai
from tollway.testing.mock_batches import add_batch_routes
from tollway.testing.mock_bedrock import add_bedrock_routes
from tollway.testing.mock_control import add_control_routes
from tollway.testing.mock_gemini import add_gemini_routes
from tollway.testing.mock_http import STATE_KEY, MockCall, endpoint
from tollway.testing.mock_media import add_media_routes
from tollway.testing.mock_responses import add_responses_routes
from tollway.testing.mock_state import Fault, MockSettings, MockState
from tollway.testing.mock_vertex import add_vertex_routes

__all__ = ["Fault", "MockSettings", "MockState", "MockUpstream", "create_mock_app", "serve_mock_upstream",
           "start_mock_upstream"]

_MAX_BODY_BYTES = 64 * 1024 * 1024
_SHUTDOWN_TIMEOUT_S = 0.25
"""Closing does not wait for hanging faults or long streams: tests want a quick teardown."""


async def _models(call: MockCall) -> web.StreamResponse:
    """`GET /v1/models`: Anthropic's shape when the client sends `anthropic-version`."""
    if call.header("anthropic-version"):
        return await mock_anthropic.list_models(call)
    return await mock_openai.list_models(call)


async def _model(call: MockCall) -> web.StreamResponse:
    if call.header("anthropic-version"):
        return await mock_anthropic.retrieve_model(call)
    return await mock_openai.retrieve_model(call)


def create_mock_app(settings: MockSettings | None = None) -> web.Application:
    """A fresh mock application with its own state; `settings` is kept (and changed) in place."""
    app = web.Application(client_max_size=_MAX_BODY_BYTES)
    app[STATE_KEY] = MockState(settings if settings is not None else MockSettings())
    router = app.router
    for prefix in ("/v1", "/openai/deployments/{deployment}"):
        router.add_post(f"{prefix}/chat/completions", endpoint(mock_openai.chat_completions, "openai"))
        router.add_post(f"{prefix}/completions", endpoint(mock_openai.completions, "openai"))
        router.add_post(f"{prefix}/embeddings", endpoint(mock_openai.embeddings, "openai"))
    router.add_get("/v1/models", endpoint(_models, "openai"))
    router.add_get("/v1/models/{model}", endpoint(_model, "openai"))
    router.add_post("/v1/messages", endpoint(mock_anthropic.messages, "anthropic"))
    router.add_post("/v1/messages/count_tokens", endpoint(mock_anthropic.count_tokens, "anthropic"))
    add_responses_routes(app)
    add_gemini_routes(router)
    add_bedrock_routes(app)
    add_vertex_routes(app)
    add_media_routes(app)
    add_batch_routes(app)
    add_control_routes(app)
    return app


class MockUpstream:
    """A mock upstream running on a local port; `url` has no `/v1` suffix."""

    def __init__(self, runner: web.AppRunner, url: str, state: MockState) -> None:
        self._runner = runner
        self.url = url
        self.state = state

    @property
    def settings(self) -> MockSettings:
        """The live settings: changing a field changes the next responses."""
        return self.state.settings

    async def close(self) -> None:
        """Stop listening and drop open connections."""
        await self._runner.cleanup()

    async def __aenter__(self) -> MockUpstream:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()


async def start_mock_upstream(host: str = "127.0.0.1", port: int = 0, settings: MockSettings | None = None,
                              ssl_context: ssl.SSLContext | None = None) -> MockUpstream:
    """Start a mock upstream on `host:port` (port 0 picks a free one) in the running loop;
    with ``ssl_context`` it speaks HTTPS (and may ask for client certificates)."""
    app = create_mock_app(settings)
    # handler_cancellation: a client that goes away cancels its handler, so stats see it at once.
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=_SHUTDOWN_TIMEOUT_S)
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=ssl_context)
    await site.start()
    state = app[STATE_KEY]
    state.server = runner.server
    bound_port = runner.addresses[0][1]
    scheme = "https" if ssl_context is not None else "http"
    return MockUpstream(runner, f"{scheme}://{host}:{bound_port}", state)


def serve_mock_upstream(host: str, port: int, settings: MockSettings) -> None:
    """Serve until SIGINT/SIGTERM (the `tollway mock-upstream` command); uses uvloop if installed."""
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        runner.run(_serve_forever(host, port, settings))


async def _serve_forever(host: str, port: int, settings: MockSettings) -> None:
    mock = await start_mock_upstream(host, port, settings)
    # What was built to serve lives as long as the process: out of the collector's scans, a
    # full collection stays short (unfrozen, one took ~50 ms every so many thousand
    # requests, and showed in a benchmark as the gateway's latency).
    gc.collect()
    gc.freeze()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(signum, stop.set)
        except (NotImplementedError, RuntimeError):  # not on Windows or outside the main thread
            pass
    print(f"tollway mock upstream listening on {mock.url}", flush=True)
    try:
        await stop.wait()
    finally:
        await mock.close()


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    return uvloop.new_event_loop if uvloop is not None else None
