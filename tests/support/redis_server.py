"""A throw-away redis-server for tests: a free port on 127.0.0.1, a temp dir, no persistence.

`start_redis()` returns a handle that can kill the server (as a crash would) and start
it again on the same port, empty. `require_redis()` is what fixtures call: it skips with
the reason when the binary is missing, unless the environment variable CI is set, in
which case a missing server is a failure (`.ci/run` installs it).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest


class RedisUnavailable(Exception):
    """redis-server is not installed here."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RedisServer:
    binary: str
    root: Path
    port: int
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 10.0) -> None:
        """Start (or start again, empty) on this server's port; return once it answers PING."""
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.root),
             "--save", "", "--appendonly", "no", "--protected-mode", "yes", "--daemonize", "no",
             "--logfile", str(self.root / "redis.log")],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout_s
        while not self._answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                log = self.root / "redis.log"
                detail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                self.kill()
                raise RuntimeError(f"redis-server did not start on port {self.port}:\n{detail}")
            time.sleep(0.02)

    def kill(self) -> None:
        """SIGKILL: the server vanishes with its data, as in a crash."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None

    def pause(self) -> None:
        """SIGSTOP: the server keeps its connections and data but answers nothing (a hang)."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGCONT)

    def stop(self) -> None:
        self.kill()
        shutil.rmtree(self.root, ignore_errors=True)

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False


def start_redis() -> RedisServer:
    """A running redis-server on a free port; raise RedisUnavailable when not installed."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RedisUnavailable("redis-server is not installed (apt-get install redis-server)")
    server = RedisServer(binary, Path(tempfile.mkdtemp(prefix="tollway-redis-")), _free_port())
    try:
        server.start()
    except BaseException:
        shutil.rmtree(server.root, ignore_errors=True)
        raise
    return server


def require_redis() -> RedisServer:
    """`start_redis()` for fixtures: skip (or, under CI, fail) when there is no redis-server."""
    try:
        return start_redis()
    except RedisUnavailable as exc:
        if os.environ.get("CI"):
            pytest.fail(f"{exc}; CI must run the Redis tests")
        pytest.skip(str(exc))
