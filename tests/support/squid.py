"""A throw-away squid forward proxy for egress tests: a free port on 127.0.0.1, a temp dir,
no cache, an access log the tests read, optional basic authentication.

`require_squid()` skips when squid is not installed, unless CI is set (`.ci/run` installs
it), in which case that is a failure.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.redis_server import _free_port

_SQUID = shutil.which("squid") or shutil.which("squid", path="/usr/sbin")
_BASIC_AUTH_HELPER = Path("/usr/lib/squid/basic_ncsa_auth")


@dataclass
class SquidServer:
    root: Path
    port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def access_log(self) -> str:
        """The lines squid has logged so far ("... METHOD URL ..." per request)."""
        path = self.root / "access.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def wait_for_log(self, text: str, timeout_s: float = 5.0) -> str:
        """The access log once it mentions ``text`` (squid writes it after each transaction)."""
        deadline = time.monotonic() + timeout_s
        while text not in (log := self.access_log()) and time.monotonic() < deadline:
            time.sleep(0.05)
        return log

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        shutil.rmtree(self.root, ignore_errors=True)


def start_squid(credentials: tuple[str, str] | None = None, timeout_s: float = 20.0) -> SquidServer:
    """A running squid; with ``credentials`` it asks for basic authentication (407 without)."""
    if _SQUID is None:
        raise FileNotFoundError("squid is not installed (apt-get install squid)")
    root = Path(tempfile.mkdtemp(prefix="tollway-squid-"))
    root.chmod(0o777)  # squid started as root runs as its own user and writes its logs here
    port = _free_port()
    lines = [f"http_port 127.0.0.1:{port}", f"pid_filename {root}/squid.pid", f"access_log stdio:{root}/access.log",
             f"cache_log {root}/cache.log", "cache deny all", "cache_mem 8 MB", f"coredump_dir {root}",
             "shutdown_lifetime 0 seconds", "pinger_enable off", "acl loopback src 127.0.0.1"]
    if credentials is not None:
        passwords = root / "passwords"
        hashed = subprocess.run(["openssl", "passwd", "-apr1", credentials[1]], check=True, capture_output=True, text=True)
        passwords.write_text(f"{credentials[0]}:{hashed.stdout.strip()}\n")
        passwords.chmod(0o644)
        lines += [f"auth_param basic program {_BASIC_AUTH_HELPER} {passwords}", "acl known proxy_auth REQUIRED",
                  "http_access allow loopback known"]
    else:
        lines.append("http_access allow loopback")
    lines.append("http_access deny all")
    (root / "squid.conf").write_text("\n".join(lines) + "\n")
    process = subprocess.Popen([_SQUID, "-N", "-f", str(root / "squid.conf")], stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = SquidServer(root, port, process)
    deadline = time.monotonic() + timeout_s
    while not _listening(port):
        if process.poll() is not None or time.monotonic() > deadline:
            log = (root / "cache.log").read_text(errors="replace")[-2000:] if (root / "cache.log").exists() else ""
            server.stop()
            raise RuntimeError(f"squid did not start on port {port}:\n{log}")
        time.sleep(0.05)
    return server


def require_squid(credentials: tuple[str, str] | None = None) -> SquidServer:
    try:
        return start_squid(credentials)
    except FileNotFoundError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"{exc}; CI must run the egress tests")
        pytest.skip(str(exc))


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False
