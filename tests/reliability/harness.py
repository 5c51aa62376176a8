"""Helpers of the reliability suite: the mock upstream on its own thread, the gateway in
a thread or as a real `tollway serve` process, and counts of what a process holds open.

Everything talks to 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx2
import orjson
import pytest
import yaml

from tests.support.gateway import RunningGateway, free_port
from tollway.config.schema import EstimateConfig
from tollway.providers.client import Api
from tollway.providers.http import HTTPClient
from tollway.proxy.estimate import demand_for
from tollway.proxy.passthrough import OpenAIPassthrough
from tollway.proxy.request import parse_request
from tollway.proxy.translated import MessagesViaChat
from tollway.proxy.worst_case import analyse

T = TypeVar("T")
ROOT = Path(__file__).resolve().parents[2]
SLOW_VARIABLE = "TOLLWAY_SLOW_TESTS"
slow = pytest.mark.skipif(os.environ.get(SLOW_VARIABLE) != "1",
                          reason=f"slow (several seconds of waiting by design): set {SLOW_VARIABLE}=1 to run it")
HELLO = [{"role": "user", "content": "Hello"}]


def prompt_estimate(body: dict[str, Any], api: Api = Api.CHAT, model: str = "gpt-4o-mini") -> int:
    """The prompt tokens the gateway estimates for ``body`` sent to an OpenAI-compatible
    provider, as it charges a stream cut short: its size / 4, never above the prompt's
    worst case (`tollway.proxy.estimate`)."""
    request = parse_request(api, orjson.dumps(body))
    exchange = OpenAIPassthrough(Api.CHAT) if api is Api.CHAT else MessagesViaChat()
    worst = analyse(exchange.upstream_api, exchange.upstream_body(request, model), model)
    return demand_for(request, worst, EstimateConfig(), None).prompt_estimate


def control(mock_url: str, method: str, path: str, body: Any = None) -> Any:
    """A call of the mock's control API (`/_mock/...`), synchronous: the mock runs on its own thread."""
    response = httpx2.request(method, mock_url + path, json=body, timeout=10)
    response.raise_for_status()
    return response.json()


async def _count_tasks() -> int:
    return len(asyncio.all_tasks())


def gateway_tasks(gateway: RunningGateway) -> int:
    """asyncio tasks alive on the gateway's loop (this counting task excluded)."""
    return gateway.call(_count_tasks()) - 1


def upstream_pool(gateway: RunningGateway, provider: str = "openai") -> tuple[int, int]:
    """(open, idle) connections of a provider's native client pools, all origins together."""
    client: HTTPClient | None = gateway.runtime.providers[provider]._native
    pools = list(client._pools.values()) if client is not None else []
    return sum(p.open_connections for p in pools), sum(p.idle_connections for p in pools)


def eventually(probe: Callable[[], T], accept: Callable[[T], bool], timeout_s: float = 5.0,
               pause_s: float = 0.02) -> T:
    """``probe()`` until ``accept`` holds or the time is up; the last result either way."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = probe()
        if accept(result) or time.monotonic() > deadline:
            return result
        time.sleep(pause_s)


class ServedGateway:
    """`python -m tollway serve` as a child process, with its stdout and stderr in files."""

    def __init__(self, config: dict[str, Any], directory: Path, env: dict[str, str] | None = None,
                 port: int | None = None, fd_limit: int | tuple[int, int] | None = None) -> None:
        """``fd_limit``: the process's RLIMIT_NOFILE, soft and hard (one number: both, so
        that it cannot raise it)."""
        self.directory = directory
        self.fd_limit = fd_limit
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config_path = directory / "tollway.yaml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.stdout_path = directory / "stdout.log"
        self.stderr_path = directory / "stderr.log"
        self.env = {**os.environ, **(env or {}), "PYTHONPATH": str(ROOT)}
        self.process: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        return [sys.executable, "-m", "tollway", "serve", "--config", str(self.config_path),
                "--host", "127.0.0.1", "--port", str(self.port)]

    # A bound on waiting, not a speed requirement: a new Python process importing the
    # gateway took over 30 s with the suite on 4 workers on a shared 2-core machine.
    def start(self, timeout_s: float = 120.0) -> ServedGateway:
        with open(self.stdout_path, "ab") as out, open(self.stderr_path, "ab") as err:
            self.process = subprocess.Popen(self.command(), stdout=out, stderr=err, env=self.env, cwd=self.directory,
                                            preexec_fn=self._limit_fds if self.fd_limit else None)
        deadline = time.monotonic() + timeout_s
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"tollway serve exited with {self.process.returncode}:\n{self.stderr()}")
            try:
                if httpx2.get(self.url + "/health", timeout=1).status_code == 200:
                    return self
            except httpx2.TransportError:
                pass
            if time.monotonic() > deadline:
                self.kill()
                raise TimeoutError(f"tollway serve did not start in time:\n{self.stderr()}")
            time.sleep(0.05)

    def _limit_fds(self) -> None:
        assert self.fd_limit is not None
        limits = self.fd_limit if isinstance(self.fd_limit, tuple) else (self.fd_limit, self.fd_limit)
        resource.setrlimit(resource.RLIMIT_NOFILE, limits)

    def rss_bytes(self) -> int:
        """The process's resident memory now."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS in /proc/PID/status")

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def wait(self, timeout_s: float) -> int:
        assert self.process is not None
        return self.process.wait(timeout_s)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace") if self.stdout_path.exists() else ""


def run_serve(config_path: Path, env: dict[str, str] | None = None, timeout_s: float = 60.0) -> subprocess.CompletedProcess[str]:
    """`tollway serve` run to its end (for start-up failures), output captured."""
    command = [sys.executable, "-m", "tollway", "serve", "--config", str(config_path), "--port", str(free_port())]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout_s,
                          env={**os.environ, **(env or {}), "PYTHONPATH": str(ROOT)}, cwd=config_path.parent)
