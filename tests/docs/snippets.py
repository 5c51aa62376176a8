"""Reading the manual's code blocks, and running them as a reader would, in order.

Every fenced block of README.md and docs/*.md is a `Snippet`. Blocks in the languages
below are run or loaded; a block that must not run says so in a comment on its first
lines, which the runner honours:

- ``# docs-test: skip (reason)``: never run (installs, needs the internet, runs for ever).
- ``# docs-test: background``: a command that keeps running (a server). It is started,
  the port after ``--port`` is waited for, and it runs until the end of the document or
  until a later background block takes the same port (then it is stopped first).
- ``# docs-test: file NAME``: the block's text is saved as NAME in the document's folder
  (as the reader is told to do); a YAML one is also loaded as a configuration.
- ``# docs-test: fragment``: YAML that is part of a configuration, parsed but not loaded.

A document's blocks share one temporary folder and one environment, as one terminal
would: what a shell block exports is there for the blocks after it. The ports the manual
uses, 8080 (the gateway) and 9911 (the mock provider), are replaced by free ones, and
``--host 0.0.0.0`` by 127.0.0.1, so that tests never clash with what runs on the machine.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

SHELL = {"sh", "bash", "shell"}
RUN = SHELL | {"yaml", "python"}
SHOWN_ONLY = {"json", "text", "http", "promql", "ini", "csv", "console-output"}  # output and data, never run
_FENCE = re.compile(r"^```([\w+-]*)\s*$")
_MARKER = re.compile(r"docs-test:\s*(skip|background|fragment|file\s+\S+)")
_PORTS = {"8080": "gateway", "9911": "mock"}


@dataclass(frozen=True)
class Snippet:
    document: Path
    line: int
    language: str
    text: str
    section: str

    @property
    def where(self) -> str:
        inside = self.document.is_relative_to(ROOT)
        return f"{self.document.relative_to(ROOT) if inside else self.document}:{self.line}"

    @property
    def marker(self) -> str | None:
        for line in self.text.splitlines()[:3]:
            match = _MARKER.search(line) if line.lstrip().startswith("#") else None
            if match:
                return match.group(1)
        return None


def snippets(document: Path) -> Iterator[Snippet]:
    """Every fenced block of ``document``, with the `## ` section it is in."""
    lines = document.read_text(encoding="utf-8").splitlines()
    section, index = "", 0
    while index < len(lines):
        line = lines[index]
        if line.startswith("## "):
            section = line[3:].strip()
        fence = _FENCE.match(line)
        if fence is None:
            index += 1
            continue
        end = index + 1
        while end < len(lines) and not lines[end].startswith("```"):
            end += 1
        yield Snippet(document, index + 1, fence.group(1).lower(), "\n".join(lines[index + 1:end]) + "\n", section)
        index = end + 1


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Session:
    """One reader going through one document: a folder, an environment, background servers."""

    folder: Path
    env: dict[str, str]
    ports: dict[str, str] = field(default_factory=dict)
    background: dict[int, subprocess.Popen] = field(default_factory=dict)  # by port

    def localise(self, text: str) -> str:
        """The manual's ports -> this session's free ones; public binds -> loopback."""
        for port in _PORTS:
            text = re.sub(rf"(?<![\d.]){port}(?!\d)", self.ports[port], text)
        return text.replace("--host 0.0.0.0", "--host 127.0.0.1")

    def run_shell(self, snippet: Snippet, timeout_s: float = 90.0) -> str:
        """Run a shell block with bash -e in the session; keeps what it exports."""
        captured = self.folder / ".docs-test-env"
        script = f"set -euo pipefail\n{self.localise(snippet.text)}\nenv -0 > {captured}\n"
        result = subprocess.run(["bash", "-c", script], cwd=self.folder, env=self.env, capture_output=True,
                                text=True, timeout=timeout_s, check=False)
        if result.returncode != 0:
            raise AssertionError(f"{snippet.where}: exit {result.returncode}\n{snippet.text}\n"
                                 f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}")
        entries = captured.read_bytes().decode().split("\0")
        self.env = dict(entry.split("=", 1) for entry in entries if "=" in entry)
        return result.stdout

    def run_python(self, snippet: Snippet, timeout_s: float = 60.0) -> str:
        result = subprocess.run([sys.executable, "-c", self.localise(snippet.text)], cwd=self.folder, env=self.env,
                                capture_output=True, text=True, timeout=timeout_s, check=False)
        if result.returncode != 0:
            raise AssertionError(f"{snippet.where}: exit {result.returncode}\n{snippet.text}\n{result.stderr}")
        return result.stdout

    def start_background(self, snippet: Snippet, timeout_s: float = 30.0) -> None:
        """Start a server block and wait until its --port answers."""
        text = self.localise(snippet.text)
        found = re.search(r"--port\s+(\d+)", text)
        assert found, f"{snippet.where}: a background block needs --port N so that it can be waited for"
        port = int(found.group(1))
        self._stop(self.background.pop(port, None))
        log = open(self.folder / f".docs-test-{snippet.line}.log", "w")  # noqa: SIM115 - kept open while it runs
        process = subprocess.Popen(["bash", "-c", f"exec {text.strip()}"], cwd=self.folder, env=self.env,
                                   stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.background[port] = process
        deadline = time.monotonic() + timeout_s
        while True:
            if process.poll() is not None:
                raise AssertionError(f"{snippet.where}: exited with {process.returncode}:\n"
                                     f"{(self.folder / log.name).read_text()}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError(f"{snippet.where}: nothing listens on {port} after {timeout_s}s") from None
                time.sleep(0.1)

    def stop_background(self) -> None:
        """Stop every server this session started."""
        while self.background:
            self._stop(self.background.popitem()[1])

    @staticmethod
    def _stop(process: subprocess.Popen | None) -> None:
        """SIGTERM (a graceful stop), then wait; SIGKILL if it does not end."""
        if process is None:
            return
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)
