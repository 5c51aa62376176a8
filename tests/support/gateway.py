"""Running the real gateway in tests: uvicorn in a background thread on a free port."""

from __future__ import annotations

import asyncio
import resource
import socket
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

import uvicorn

from tollway.config import settings_from_dict
from tollway.config.schema import ServerConfig
from tollway.governance.counters.base import CounterState
from tollway.server.app import Gateway, create_app
from tollway.server.runtime import Runtime
from tollway.server.services import Services
from tollway.server.serving import GatewayServerConfig, connection_limits

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ThreadedServer:
    """An ASGI app served by uvicorn in its own thread and event loop."""

    def __init__(self, app: Any, port: int | None = None, tls: tuple[str, str] | None = None) -> None:
        # The listening socket is bound here and handed to uvicorn, not a port number: a port
        # found free and bound later can be taken meanwhile by a test on another xdist worker.
        self._socket = socket.socket()
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind(("127.0.0.1", port or 0))
        self.port = self._socket.getsockname()[1]
        # The server the CLI runs (tollway.server.serving), with its default connection limits.
        limits = connection_limits(ServerConfig(), resource.getrlimit(resource.RLIMIT_NOFILE)[0])
        certificate = {"ssl_certfile": tls[0], "ssl_keyfile": tls[1]} if tls else {}
        config = GatewayServerConfig(app, connection_limits=limits, host="127.0.0.1", port=self.port, lifespan="on",
                                     log_level="warning", loop="asyncio", access_log=False, timeout_graceful_shutdown=5,
                                     **certificate)
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self._socket]}, daemon=True)

    def start(self, timeout_s: float = 20.0) -> None:
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.server.started:
            if not self._thread.is_alive():
                raise RuntimeError("the server exited during startup (see the log above)")
            if time.monotonic() > deadline:
                raise TimeoutError("the server did not start in time")
            time.sleep(0.01)

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(timeout=15)
        self._socket.close()


@dataclass
class RunningGateway:
    url: str
    app: Gateway
    server: ThreadedServer

    @property
    def runtime(self) -> Runtime:
        return self.app.runtime

    @property
    def v1(self) -> str:
        return self.url + "/v1"

    def stop(self) -> None:
        self.server.stop()

    def call(self, coroutine: Coroutine[Any, Any, T], timeout_s: float = 10.0) -> T:
        """Run a coroutine on the gateway's own event loop (its state lives there)."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.runtime.loop).result(timeout_s)

    def counters(self) -> dict[str, CounterState]:
        """Every counter, once the requests already answered have been settled (a
        stream's settlement may follow its last byte by a moment)."""
        deadline = time.monotonic() + 5
        while self.runtime.enforcer.reservations_in_flight and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.call(self.runtime.store.export())


def start_gateway(config: dict[str, Any], services: Services | None = None, *,
                  clock_ms: Callable[[], int] | None = None, tls: tuple[str, str] | None = None) -> RunningGateway:
    """The gateway for ``config`` with ``services`` injected; ``clock_ms`` (epoch ms) alone
    is short for ``Services(clock_ms=clock_ms)``; ``tls``: (certificate file, key file) to
    serve HTTPS (clients that send a bearer token only over TLS: boto3)."""
    if clock_ms is not None:
        services = Services(clock_ms=clock_ms)
    app = create_app(settings_from_dict(with_patient_redis(config)), services)
    server = ThreadedServer(app, tls=tls)
    server.start()
    return RunningGateway(f"{'https' if tls else 'http'}://127.0.0.1:{server.port}", app, server)


def with_patient_redis(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` with Redis counters given 1 s to answer unless it says otherwise. The default
    50 ms suits a Redis on the gateway's network; here Redis shares two cores with four test
    workers and waits for one longer than that, and a request that should be decided gets the
    503 of an unavailable store (tests of that failure stop Redis or set their own timeout)."""
    counters = config.get("counters")
    if not isinstance(counters, dict) or counters.get("backend") != "redis" or "timeout_ms" in counters:
        return config
    return {**config, "counters": {**counters, "timeout_ms": 1000}}


def mock_providers(mock_url: str, **extra: Any) -> dict[str, Any]:
    """Providers of every type, all pointing at the mock upstream."""
    providers = {
        "openai": {"type": "openai", "base_url": f"{mock_url}/v1", "keys": [{"value": "sk-test-openai"}]},
        "anthropic": {"type": "anthropic", "base_url": mock_url, "keys": [{"value": "sk-ant-test"}]},
        "azure": {"type": "azure", "base_url": mock_url, "api_version": "2024-06-01",
                  "keys": [{"value": "azure-test-key"}], "deployments": {"gpt-4o-mini": "mini-deploy"}},
    }
    for name, overrides in extra.items():
        providers.setdefault(name, {}).update(overrides)
    return providers
