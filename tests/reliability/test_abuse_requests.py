"""Requests without a valid virtual key, sent as fast as a client can: made-up model
names must not create metric series, and the 401s must not write a request log row
each, while a client with a key keeps being served (and logged) as usual."""

from __future__ import annotations

import re
import sqlite3
import uuid
from pathlib import Path
from typing import Any

import httpx2

from tests.api.support import MockThread
from tests.reliability.harness import HELLO
from tests.reliability.traffic import NormalTraffic, usual_latency
from tests.support.gateway import RunningGateway, mock_providers

VK = "tw-reliability-abuse-0123456789abcdef"
ABUSE = 300


def _config(tmp_path: Path, mock_url: str, **extra: Any) -> dict[str, Any]:
    return {"database_url": f"sqlite:///{tmp_path / 'abuse.db'}", "enforce_virtual_keys": True,
            "providers": mock_providers(mock_url),
            "governance": {"virtual_keys": [{"id": "vk-abuse", "name": "abuse", "value": VK}]}, **extra}


def _unauthenticated_flood(gateway: RunningGateway, count: int, traffic: NormalTraffic | None = None) -> list[int]:
    """Chat completions with a made-up model each, half with no key and half with a
    made-up key, as fast as one connection goes: ``count`` of them, more until
    ``traffic`` has had enough requests (an even number); their statuses."""
    statuses: list[int] = []
    with httpx2.Client(timeout=10) as client:
        i = 0
        while i < count or (traffic is not None and not traffic.enough()) or i % 2:
            headers = {"Authorization": f"Bearer tw-{uuid.uuid4().hex}"} if i % 2 else {}
            body = {"model": f"openai/made-up-{uuid.uuid4().hex}", "messages": HELLO}
            statuses.append(client.post(gateway.v1 + "/chat/completions", json=body, headers=headers).status_code)
            i += 1
    return statuses


def _series(gateway: RunningGateway, metric: str) -> list[str]:
    text = httpx2.get(gateway.url + "/metrics", timeout=10).text
    return [line for line in text.splitlines() if line.startswith(metric + "{")]


def test_made_up_model_names_add_no_metric_series(gateway, mock: MockThread, tmp_path: Path) -> None:
    running = gateway(_config(tmp_path, mock.url))
    usual = usual_latency(running.v1, VK)
    before = len(_series(running, "tollway_requests_total"))
    traffic = NormalTraffic(running.v1, VK)
    traffic.start()
    try:
        statuses = _unauthenticated_flood(running, ABUSE, traffic)
    finally:
        traffic.stop()
    assert set(statuses) == {401}
    traffic.check(usual)
    series = _series(running, "tollway_requests_total")
    assert not [line for line in series if "made-up" in line]
    # Both kinds of denial, one series each; the key's own series as before.
    assert len(series) <= before + 2, series
    denied = {re.search(r'decision="(\w+)"', line).group(1): float(line.rsplit(" ", 1)[1])  # type: ignore[union-attr]
              for line in series if 'model="other"' in line}
    assert denied == {"virtual_key_required": len(statuses) / 2, "virtual_key_not_found": len(statuses) / 2}
    assert any('model="gpt-4o-mini"' in line and 'decision="allow"' in line for line in series)
    assert not [line for line in _series(running, "tollway_tokens_total") if "made-up" in line]


def _unauthenticated_rows(database: Path) -> tuple[int, int]:
    """(rows of single unauthenticated denials, denials counted in the summary rows)."""
    with sqlite3.connect(database) as connection:
        rows = connection.execute(
            "SELECT request_id, error FROM request_logs WHERE decision IN "
            "('virtual_key_required', 'virtual_key_not_found')").fetchall()
    single = [row for row in rows if not row[0].startswith("folded-")]
    folded = sum(int(re.match(r"(\d+) more requests", row[1]).group(1)) for row in rows  # type: ignore[union-attr]
                 if row[0].startswith("folded-"))
    return len(single), folded


def test_unauthenticated_denials_are_sampled_in_the_request_log(gateway, mock: MockThread, tmp_path: Path) -> None:
    running = gateway(_config(tmp_path, mock.url, request_log_unauthenticated_per_minute=5))
    usual = usual_latency(running.v1, VK)
    traffic = NormalTraffic(running.v1, VK)
    traffic.start()
    try:
        sent = len(_unauthenticated_flood(running, ABUSE, traffic))
    finally:
        traffic.stop()
    traffic.check(usual)
    served = len(traffic.latencies) + 11  # and those of usual_latency
    running.stop()  # writes the current minute's summary and flushes the log
    single, folded = _unauthenticated_rows(tmp_path / "abuse.db")
    assert single <= 10  # five a minute (the flood may span the turn of a minute)
    assert single + folded == sent
    with sqlite3.connect(tmp_path / "abuse.db") as connection:
        allowed = connection.execute("SELECT count(*) FROM request_logs WHERE decision = 'allow'").fetchone()[0]
    assert allowed == served  # a client with a key is logged request by request, as before


def test_every_unauthenticated_denial_is_logged_when_sampling_is_off(gateway, mock: MockThread, tmp_path: Path) -> None:
    running = gateway(_config(tmp_path, mock.url, request_log_unauthenticated_per_minute=None))
    _unauthenticated_flood(running, 20)
    running.stop()
    assert _unauthenticated_rows(tmp_path / "abuse.db") == (20, 0)
