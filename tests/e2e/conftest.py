"""End-to-end fixtures: real processes only.

A real PostgreSQL (`postgres_server`, tests/support/fixtures.py), a real redis-server
(tests/support/redis_server.py), the mock provider (`python -m tollway mock-upstream`)
and real gateways (`python -m tollway serve`), each on its own free port of 127.0.0.1.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.redis_server import RedisServer, require_redis

ADMIN_TOKEN = "e2e-admin-token-0123456789"
_ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(ready, what: str, timeout_s: float = 30.0, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while not ready():
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not ready after {timeout_s} s")
        time.sleep(0.05)


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


class GatewayProcess:
    """One `python -m tollway serve` (with ``workers`` worker processes) and its log."""

    def __init__(self, config: dict[str, Any], directory: Path, name: str, workers: int = 1) -> None:
        self.port = free_port()
        self.name = name
        self.workers = workers
        self.config_path = directory / f"{name}.yaml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.log_path = directory / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "tollway", "serve", "--config", str(self.config_path),
                 "--port", str(self.port), "--workers", str(self.workers)],
                stdout=log, stderr=subprocess.STDOUT, env=_ENV, start_new_session=True,
            )

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        assert self.process is not None
        try:
            wait_until(lambda: _healthy(self.port), f"gateway {self.name}", timeout_s, self.process)
        except (RuntimeError, TimeoutError) as exc:
            raise RuntimeError(f"{exc}; its log:\n{self.log()[-3000:]}") from None

    def stop(self) -> None:
        """SIGTERM, as an orchestrator does: the gateway drains and flushes usage."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        self.process = None

    def worker_pids(self) -> list[int]:
        """uvicorn's worker processes (spawned by multiprocessing; its resource tracker is not one)."""
        assert self.process is not None
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        pids = [int(pid) for pid in children.read_text().split()] if children.exists() else []
        return [pid for pid in pids if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def start_gateways(gateways: list[GatewayProcess]) -> None:
    """Start them all at once (they share the start-up cost of the machine), then wait."""
    for gateway in gateways:
        gateway.start()
    for gateway in gateways:
        gateway.wait_ready()


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    server = require_redis()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def mock_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    port = free_port()
    log = (tmp_path_factory.mktemp("mock") / "mock.log").open("wb")
    process = subprocess.Popen([sys.executable, "-m", "tollway", "mock-upstream", "--port", str(port)],
                               stdout=log, stderr=subprocess.STDOUT, env=_ENV)
    try:
        wait_until(lambda: _listening(port), "mock upstream", 30, process)
        yield port
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
        log.close()
