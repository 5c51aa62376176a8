"""`make demo PORT=N` starts the demo on that port, and every command it prints runs as
printed (curl, the openai SDK, the admin CLI) against it."""

from __future__ import annotations

import os
import re
import select
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

from tests.docs.snippets import ROOT, free_port

_SECTIONS = ("Try it with curl:", "Or with the openai SDK:", "Or the admin CLI:")


def _demo_command(port: int, directory: Path) -> list[str]:
    """`make demo` where make and an installed .venv are there (as a reader runs it);
    otherwise the command it runs."""
    venv_ready = shutil.which("make") and Path(sys.executable).parent == ROOT / ".venv" / "bin" and subprocess.run(
        ["make", "-q", "install"], cwd=ROOT, capture_output=True, check=False).returncode == 0
    if venv_ready:
        return ["make", "-s", "demo", f"PORT={port}", f"DEMO_DIR={directory}"]
    return [sys.executable, "-m", "tollway", "demo", "--port", str(port), "--directory", str(directory)]


def _read_until(process: subprocess.Popen, last_line: str, timeout_s: float = 60.0) -> str:
    assert process.stdout is not None
    out, deadline = "", time.monotonic() + timeout_s
    while last_line not in out:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or process.poll() is not None:
            raise AssertionError(f"the demo did not print its instructions:\n{out}")
        ready, _, _ = select.select([process.stdout], [], [], remaining)
        if ready:
            out += os.read(process.stdout.fileno(), 65536).decode()
    return out


def printed_commands(instructions: str) -> dict[str, str]:
    """Each section's command, continuation lines included, as a shell would read it."""
    commands: dict[str, str] = {}
    for section in _SECTIONS:
        lines = instructions.split(section, 1)[1].splitlines()[1:]
        block = []
        for line in lines:
            if not line.startswith("  ") and not (block and block[-1].endswith("\\")):
                break
            if not line.strip().startswith("(first:"):
                block.append(line)
        commands[section] = "\n".join(block).strip()
    return commands


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[tuple[int, str]]:
    port = free_port()
    process = subprocess.Popen(_demo_command(port, tmp_path / "demo"), cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, start_new_session=True)
    try:
        instructions = _read_until(process, "Stop: Ctrl-C")
        _wait_healthy(f"http://127.0.0.1:{port}/health")
        yield port, instructions
    finally:
        os.killpg(process.pid, signal.SIGINT)  # Ctrl-C, as the reader stops it
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)


def _wait_healthy(url: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx2.get(url, timeout=2).status_code == 200:
                return
        except httpx2.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"the demo gateway did not answer on {url}")


def test_make_demo_on_a_chosen_port_and_its_printed_commands_run_as_printed(demo: tuple[int, str]) -> None:
    port, instructions = demo
    assert f"gateway on http://127.0.0.1:{port}" in instructions
    commands = printed_commands(instructions)
    outputs = {}
    for section, command in commands.items():
        result = subprocess.run(["bash", "-c", command], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
        assert result.returncode == 0, f"{section}\n{command}\n{result.stdout}\n{result.stderr}"
        outputs[section] = result.stdout
    assert '"choices"' in outputs["Try it with curl:"]
    assert outputs["Or with the openai SDK:"].strip()
    assert "vk-demo" in outputs["Or the admin CLI:"]
    token = re.search(r"admin token: (\S+)\)", instructions)
    assert token and token.group(1) in commands["Or the admin CLI:"]


def test_demo_on_a_port_in_use_is_one_line_and_exit_code_4(tmp_path: Path) -> None:
    with _listening() as port:
        result = subprocess.run([sys.executable, "-m", "tollway", "demo", "--port", str(port), "--directory",
                                 str(tmp_path)], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 4
    assert result.stderr.strip().splitlines() == [
        f"cannot listen on 127.0.0.1:{port}: the port is already in use; choose another with --port (make demo PORT=9000)"]


class _listening:
    """A port something already listens on."""

    def __enter__(self) -> int:
        import socket

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        return self.sock.getsockname()[1]

    def __exit__(self, *exc: object) -> None:
        self.sock.close()


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_demo_installs_the_runtime_only_and_make_test_adds_the_test_tools(tmp_path: Path) -> None:
    def plan(target: str, *variables: str) -> str:
        result = subprocess.run(["make", "-n", target, f"VENV={tmp_path / 'venv'}", *variables], cwd=ROOT,
                                capture_output=True, text=True, check=True)
        return result.stdout

    demo = plan("demo", "PORT=9000")
    assert "pip install --quiet -e .\n" in demo and "[test]" not in demo
    assert "tollway demo --port 9000" in demo
    assert "pip install --quiet -e '.[test]'" in plan("test")
