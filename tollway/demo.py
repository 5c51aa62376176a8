"""`tollway demo`: the gateway in front of the built-in mock provider, with a small
governance hierarchy, so everything can be tried without an API key or a service."""

from __future__ import annotations

import importlib.util
import os
import secrets
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path

import yaml

DEMO_KEY = "tw-demo-0123456789abcdefghijklmnopqrstuv"


def demo_config(mock_port: int, admin_token: str) -> dict:
    """The demo's tollway.yaml (its database sits next to it: relative paths resolve there)."""
    mock = f"http://127.0.0.1:{mock_port}"
    return {
        "database_url": "sqlite:///tollway.db",
        "admin_token": admin_token,
        "enforce_virtual_keys": True,
        "flush_interval": "5s",
        "providers": {
            "openai": {"type": "openai", "base_url": f"{mock}/v1", "keys": [{"value": "sk-mock"}],
                       "rate_limit": {"request_max_limit": 3000, "request_reset_duration": "1m"}},
            "anthropic": {"type": "anthropic", "base_url": mock, "keys": [{"value": "sk-ant-mock"}]},
        },
        "model_aliases": {"fast": "openai/gpt-4o-mini", "claude": "anthropic/claude-3-5-haiku-latest"},
        "governance": {
            "customers": [{"id": "acme", "name": "Acme", "budget": {"max_limit": 50, "reset_duration": "1M", "calendar_aligned": True}}],
            "teams": [{"id": "search", "name": "Search", "customer_id": "acme", "budget": {"max_limit": 10, "reset_duration": "1d"}}],
            "virtual_keys": [{
                "id": "vk-demo", "name": "demo key", "value": DEMO_KEY, "team_id": "search",
                "budget": {"max_limit": 1, "reset_duration": "1h"},
                "rate_limit": {"request_max_limit": 20, "request_reset_duration": "1m",
                               "token_max_limit": 20000, "token_reset_duration": "1m"},
            }],
            "model_configs": [{"model_name": "gpt-4o-mini", "rate_limit": {"request_max_limit": 600, "request_reset_duration": "1m"}}],
        },
    }


def run_demo(port: int, mock_port: int | None, directory: Path) -> None:
    """Start the mock provider and the gateway on ``port``; print what to try; run until Ctrl-C."""
    _require_free(port, "--port")
    mock_port = mock_port or _free_port()
    _require_free(mock_port, "--mock-port")
    directory.mkdir(parents=True, exist_ok=True)
    config_path = directory / "tollway.yaml"
    admin_token = os.environ.get("TOLLWAY_ADMIN_TOKEN") or f"demo-admin-{secrets.token_urlsafe(12)}"
    config_path.write_text(yaml.safe_dump(demo_config(mock_port, admin_token), sort_keys=False))
    mock = subprocess.Popen([sys.executable, "-m", "tollway", "mock-upstream", "--port", str(mock_port), "--latency-ms", "20"])
    try:
        _wait_for_port(mock_port)
        print(instructions(port, config_path, admin_token), flush=True)
        gateway = subprocess.run([sys.executable, "-m", "tollway", "serve", "--config", str(config_path), "--port", str(port)],
                                 check=False)
        sys.exit(gateway.returncode)
    except KeyboardInterrupt:
        pass
    finally:
        mock.terminate()
        mock.wait(timeout=10)


def _require_free(port: int, option: str) -> None:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            print(f"cannot listen on 127.0.0.1:{port}: the port is already in use; choose another with {option} "
                  "(make demo PORT=9000)", file=sys.stderr)
            sys.exit(4)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_for_port(port: int, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"the mock provider did not start on port {port}")


def _python() -> str:
    """This interpreter, as a command a person can paste (relative when under the cwd)."""
    executable = Path(sys.executable)
    try:
        return shlex.quote(str(executable.relative_to(Path.cwd())))
    except ValueError:
        return shlex.quote(str(executable))


def instructions(port: int, config_path: Path, admin_token: str) -> str:
    """What to try, as commands that run exactly as printed (tests/docs runs them)."""
    base = f"http://127.0.0.1:{port}"
    python = _python()
    sdk_note = "" if importlib.util.find_spec("openai") else f"  (first: {python} -m pip install openai)\n"
    return f"""
Tollway demo: gateway on {base}, mock provider behind it, config in {config_path}
The demo key {DEMO_KEY} has a $1/hour budget and 20 requests/minute; its team and customer have budgets too.

Try it with curl:
  curl -s {base}/v1/chat/completions -H 'Authorization: Bearer {DEMO_KEY}' \\
    -H 'Content-Type: application/json' \\
    -d '{{"model": "openai/gpt-4o-mini", "messages": [{{"role": "user", "content": "Hello"}}]}}'

Or with the openai SDK:
{sdk_note}  {python} -c "import openai; c = openai.OpenAI(base_url='{base}/v1', api_key='{DEMO_KEY}'); \\
print(c.chat.completions.create(model='anthropic/claude-3-5-haiku-latest', \\
messages=[{{'role': 'user', 'content': 'Hi'}}]).choices[0].message.content)"

Or the admin CLI:
  {python} -m tollway keys list --url {base} --token {admin_token}

Send more than 20 requests in a minute to see a 429 that names the key and its limit.
Admin UI: {base}/ui (admin token: {admin_token})   API docs: {base}/api/docs
  The demo's key, team, customer and limits come from tollway.yaml: the UI shows them read-only
  (edit the file and restart to change them); what you create in the UI is yours to change.
Metrics: {base}/metrics   Health: {base}/health   Stop: Ctrl-C
"""
