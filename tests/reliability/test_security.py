"""Secrets: virtual key values are stored only as hashes and shown once; provider keys
never appear in responses, logs, metrics or the database; the admin token is compared in
constant time and virtual keys cannot use the management API; CORS is off unless
configured; secrets come from environment variables. A realistic workload with known
secret values, its logs captured at DEBUG (in-process and a real server's stderr),
leaves none of them anywhere.
"""

from __future__ import annotations

import ast
import hmac
import inspect
import logging
import signal
import sqlite3
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest

import tollway.api.principal as management_auth
from tests.reliability.harness import HELLO, ServedGateway, control
from tests.support.gateway import RunningGateway, mock_providers
from tollway.governance.engine import hash_key

SECRETS = {
    "RELIABILITY_OPENAI_KEY": "sk-reliability-openai-SECRET-3f9a1c77",
    "RELIABILITY_ANTHROPIC_KEY": "sk-ant-reliability-SECRET-5b2e9d10",
    "RELIABILITY_AZURE_KEY": "azure-reliability-SECRET-8c4d2a61",
    "RELIABILITY_VK": "tw-reliability-vk-SECRET-0123456789abcdef",
    "RELIABILITY_ADMIN_TOKEN": "admin-reliability-SECRET-77e1c2d9aa",
}
VK = SECRETS["RELIABILITY_VK"]
ADMIN = SECRETS["RELIABILITY_ADMIN_TOKEN"]


def _config(mock_url: str, database_url: str | None = None, **extra: Any) -> dict[str, Any]:
    """Every secret as an `env.NAME` reference: the file itself holds none."""
    providers = mock_providers(mock_url, openai={"keys": [{"value": "env.RELIABILITY_OPENAI_KEY"}]},
                               anthropic={"keys": [{"value": "env.RELIABILITY_ANTHROPIC_KEY"}]},
                               azure={"keys": [{"value": "env.RELIABILITY_AZURE_KEY"}]})
    limits = {"request_max_limit": 3, "request_reset_duration": "1h"}
    if database_url is not None:
        extra["database_url"] = database_url
    return {"admin_token": "env.RELIABILITY_ADMIN_TOKEN", "providers": providers,
            "flush_interval": "1s", "enforce_virtual_keys": True,
            "governance": {"virtual_keys": [
                {"id": "vk-env", "name": "from env", "value": "env.RELIABILITY_VK"},
                {"id": "vk-low", "name": "low limit", "value": "tw-reliability-low-0123456789abcdef", "rate_limit": limits},
            ]}, **extra}


@pytest.fixture
def secret_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    return SECRETS


def _leaks(text: str, extra: tuple[str, ...] = ()) -> list[str]:
    return [value for value in (*SECRETS.values(), *extra) if value in text]


def _workload(url: str, seen: list[str]) -> str:
    """Requests of every kind, good and bad; returns the generated key's value. Every
    response (status line, headers, body) is appended to ``seen``."""
    admin = {"Authorization": f"Bearer {ADMIN}"}
    vk = {"Authorization": f"Bearer {VK}"}

    def record(response: httpx2.Response) -> httpx2.Response:
        seen.append(f"{response.status_code} {dict(response.headers)} {response.text}")
        return response

    with httpx2.Client(base_url=url, timeout=15) as client:
        chat = {"model": "openai/gpt-4o-mini", "messages": HELLO, "max_tokens": 4}
        record(client.post("/v1/chat/completions", json=chat, headers=vk))
        record(client.post("/v1/chat/completions", json={**chat, "stream": True}, headers=vk))
        record(client.post("/v1/chat/completions", json={**chat, "model": "anthropic/claude-3-5-haiku-latest"}, headers=vk))
        record(client.post("/v1/messages", json={**chat, "model": "azure/gpt-4o-mini"},
                           headers={"x-api-key": VK, "anthropic-version": "2023-06-01"}))
        record(client.post("/v1/embeddings", json={"model": "openai/text-embedding-3-small", "input": "x"}, headers=vk))
        record(client.post("/v1/chat/completions", json=chat))  # no key: 401
        record(client.post("/v1/chat/completions", json=chat, headers={"Authorization": "Bearer tw-unknown-0123456789abcdef"}))
        for _ in range(4):  # the low-limit key is denied after three
            record(client.post("/v1/chat/completions", json=chat, headers={"x-tollway-vk": "tw-reliability-low-0123456789abcdef"}))
        record(client.post("/v1/chat/completions", content=b"{oops", headers=vk))
        record(client.post("/v1/chat/completions", json={**chat, "model": "nowhere/x"}, headers=vk))
        for fault in ({"status": 401}, {"status": 500}, {"drop": "before_response"}, {"drop": "mid_stream", "after_chunks": 2}):
            control(_mock_url(url), "POST", "/_mock/faults", fault)
            record(client.post("/v1/chat/completions", json={**chat, "stream": "drop" in fault}, headers=vk))
        record(client.get("/v1/models", headers=vk))
        record(client.get("/health"))
        record(client.get("/metrics"))
        record(client.get("/api/providers", headers=admin))
        record(client.get("/api/providers/openai", headers=admin))
        record(client.get("/api/governance/virtual-keys", headers=admin))
        record(client.get("/api/governance/virtual-keys/vk-env", headers=admin))
        record(client.get("/api/logs", headers=admin))
        record(client.get("/api/audit", headers=admin))
        record(client.get("/api/governance/usage", headers=admin))
        record(client.get("/api/governance/teams", headers={"Authorization": f"Bearer {VK}"}))  # 403
        created = client.post("/api/governance/virtual-keys", json={"name": "generated"}, headers=admin)
        assert created.status_code == 201
        generated = created.json()["virtual_key"]["value"]
        key_id = created.json()["virtual_key"]["id"]
        shown_again = record(client.get(f"/api/governance/virtual-keys/{key_id}", headers=admin))
        assert shown_again.json()["virtual_key"]["value"] is None  # shown once, at creation only
        record(client.post("/v1/chat/completions", json=chat, headers={"Authorization": f"Bearer {generated}"}))
    return generated


_MOCKS: dict[str, str] = {}


def _mock_url(gateway_url: str) -> str:
    return _MOCKS[gateway_url]


def _database_text(path: Path) -> str:
    """Every row of every table, and the raw bytes of the files (WAL included)."""
    with sqlite3.connect(path) as connection:
        dump = "\n".join(connection.iterdump())
    raw = b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))
    return dump + raw.decode("latin-1")


@pytest.fixture
def capture_all_logs() -> Iterator[list[logging.LogRecord]]:
    """Every log record of the process at DEBUG, uvicorn's (which do not propagate) included."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep(logging.DEBUG)
    loggers = [logging.getLogger(), logging.getLogger("uvicorn"), logging.getLogger("uvicorn.access")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
    yield records
    for logger, level in zip(loggers, levels):
        logger.removeHandler(handler)
        logger.setLevel(level)


def _formatted(records: list[logging.LogRecord]) -> str:
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    return "\n".join(formatter.format(record) for record in records)


def test_a_workload_with_known_secrets_leaks_none_in_process(gateway, mock, secret_env, capture_all_logs, tmp_path) -> None:
    database = tmp_path / "secrets.db"
    running: RunningGateway = gateway(_config(mock.url, f"sqlite:///{database}"))
    _MOCKS[running.url] = mock.url
    seen: list[str] = []
    generated = _workload(running.url, seen)
    running.counters()  # every stream settled
    running.call(running.runtime.log_writer.flush())
    running.call(running.runtime.flush_usage())

    assert len(capture_all_logs) > 20  # the capture works: there was plenty to look through
    assert not _leaks("\n".join(seen), (generated,)), "a response carries a secret"
    assert not _leaks(_formatted(capture_all_logs), (generated,)), "a log line carries a secret"
    assert not _leaks(httpx2.get(running.url + "/metrics").text, (generated,))
    stored = _database_text(database)
    assert not _leaks(stored, (generated,)), "the database holds a secret"
    assert hash_key(VK) in stored and hash_key(generated) in stored  # keys are kept as their hashes
    recorded = control(mock.url, "GET", "/_mock/requests")  # the provider keys did go where they belong
    assert any(SECRETS["RELIABILITY_OPENAI_KEY"] in str(r["headers"]) for r in recorded)


def test_a_real_server_at_debug_level_writes_no_secret_to_its_output(mock, secret_env, tmp_path: Path) -> None:
    served = ServedGateway({**_config(mock.url, f"sqlite:///{tmp_path / 'served.db'}"), "log_level": "debug"}, tmp_path)
    served.start()
    _MOCKS[served.url] = mock.url
    seen: list[str] = []
    try:
        generated = _workload(served.url, seen)
    finally:
        served.signal(signal.SIGTERM)
        assert served.wait(30) == 0
    output = served.stdout() + served.stderr()
    assert "DEBUG" in output  # debug logging was on
    assert not _leaks(output, (generated,)), "the server's output carries a secret"
    assert not _leaks("\n".join(seen), (generated,))
    assert not _leaks(served.config_path.read_text())  # the file names variables, not values


def test_the_admin_token_is_compared_in_constant_time(gateway, mock, secret_env, monkeypatch) -> None:
    running = gateway(_config(mock.url))
    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(management_auth.hmac, "compare_digest", spy)
    for token, status in (("wrong-token-0123456789", 401), (ADMIN, 200), (VK, 403)):
        answer = httpx2.get(running.url + "/api/governance/teams", headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == status
    assert compared == [(b"wrong-token-0123456789", ADMIN.encode()), (ADMIN.encode(), ADMIN.encode()),
                        (VK.encode(), ADMIN.encode())]
    # And nothing else compares the token: no ==, !=, in, startswith against the expected value.
    source = ast.parse(textwrap.dedent(inspect.getsource(management_auth.authenticate)))
    for node in ast.walk(source):
        if isinstance(node, ast.Compare):
            names = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
            assert "expected" not in names, ast.unparse(node)


def test_virtual_keys_cannot_reach_the_management_api(gateway, mock, secret_env) -> None:
    running = gateway(_config(mock.url))
    with httpx2.Client(base_url=running.url) as client:
        for headers, status in (({"Authorization": f"Bearer {VK}"}, 403), ({"x-tollway-vk": VK}, 401),
                                ({"x-api-key": VK}, 401), ({"x-bf-vk": VK}, 401)):
            for method, path in (("GET", "/api/governance/virtual-keys"), ("POST", "/api/governance/teams"),
                                 ("DELETE", "/api/governance/virtual-keys/vk-env")):
                answer = client.request(method, path, headers=headers, json={"id": "t", "name": "t"})
                assert answer.status_code == status, (headers, method, path, answer.text)
        assert client.get("/api/governance/virtual-keys/vk-env", headers={"Authorization": f"Bearer {ADMIN}"}).status_code == 200


def _preflight(url: str, origin: str) -> httpx2.Response:
    return httpx2.options(url, headers={"Origin": origin, "Access-Control-Request-Method": "POST",
                                        "Access-Control-Request-Headers": "authorization,content-type"})


def test_cors_is_off_unless_configured_and_then_only_for_the_named_origins(gateway, mock, secret_env) -> None:
    closed = gateway(_config(mock.url))
    for path in ("/api/governance/teams", "/v1/chat/completions"):
        assert "access-control-allow-origin" not in _preflight(closed.url + path, "https://evil.example").headers
    answer = httpx2.get(closed.url + "/api/governance/teams",
                        headers={"Origin": "https://evil.example", "Authorization": f"Bearer {ADMIN}"})
    assert answer.status_code == 200 and "access-control-allow-origin" not in answer.headers

    opened = gateway(_config(mock.url, cors_origins=["https://admin.example"]))
    allowed = _preflight(opened.url + "/api/governance/teams", "https://admin.example")
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "https://admin.example"
    assert "authorization" in allowed.headers["access-control-allow-headers"].lower()
    assert "access-control-allow-credentials" not in allowed.headers
    refused = _preflight(opened.url + "/api/governance/teams", "https://evil.example")
    assert "access-control-allow-origin" not in refused.headers
    answer = httpx2.get(opened.url + "/api/governance/teams",
                        headers={"Origin": "https://admin.example", "Authorization": f"Bearer {ADMIN}"})
    assert answer.status_code == 200 and answer.headers["access-control-allow-origin"] == "https://admin.example"
    no_token = httpx2.get(opened.url + "/api/governance/teams", headers={"Origin": "https://admin.example"})
    assert no_token.status_code == 401  # CORS lets the browser read the answer, never past the token
    assert "access-control-allow-origin" not in _preflight(opened.url + "/v1/chat/completions",
                                                           "https://admin.example").headers  # the proxy: never
