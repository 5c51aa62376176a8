"""Guessing the admin token at the `/ui` login as fast as a client can: after a few
failures each address waits (429, Retry-After) and is refused before its guess is
checked, even a right one; other addresses (127.0.0.x are all this host) log in, and
the proxy keeps serving as usual."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx2

from tests.api.support import ADMIN_TOKEN, MockThread
from tests.reliability.traffic import NormalTraffic, usual_latency
from tests.support.gateway import mock_providers


def _config(tmp_path: Path, mock_url: str, **throttle: Any) -> dict[str, Any]:
    return {"database_url": f"sqlite:///{tmp_path / 'login.db'}", "admin_token": ADMIN_TOKEN,
            "providers": mock_providers(mock_url),
            "login_throttle": {"free_failures": 3, "base_delay": "30s", **throttle}}


def _client(url: str, address: str = "127.0.0.1") -> httpx2.Client:
    transport = httpx2.HTTPTransport(local_address=address)
    return httpx2.Client(base_url=url, transport=transport, follow_redirects=False, timeout=10)


def _login(client: httpx2.Client, token: str) -> httpx2.Response:
    return client.post("/ui/login", data={"token": token, "next": "/ui/"})


def test_failed_logins_are_throttled_per_address_while_traffic_flows(gateway, mock: MockThread, tmp_path: Path) -> None:
    running = gateway(_config(tmp_path, mock.url))
    usual = usual_latency(running.v1)
    traffic = NormalTraffic(running.v1)
    traffic.start()
    try:
        with _client(running.url) as attacker:
            statuses = [_login(attacker, f"guess-{i:04d}-0123456789abcdef").status_code for i in range(300)]
            while not traffic.enough():  # held until normal requests have run beside it
                statuses.append(_login(attacker, "guess-more-0123456789abcdef").status_code)
            refused = _login(attacker, ADMIN_TOKEN)  # the right token, from the throttled address
    finally:
        traffic.stop()
    assert statuses[:3] == [401, 401, 401]
    assert set(statuses[3:]) == {429}
    assert refused.status_code == 429 and "set-cookie" not in refused.headers
    assert 1 <= int(refused.headers["retry-after"]) <= 30
    assert "Too many failed logins" in refused.text
    with _client(running.url, "127.0.0.2") as admin:
        assert _login(admin, ADMIN_TOKEN).status_code == 303  # another address is not locked out
    traffic.check(usual)


def test_guessing_from_many_addresses_meets_the_global_limit(gateway, mock: MockThread, tmp_path: Path) -> None:
    running = gateway(_config(tmp_path, mock.url, global_free_failures=5))
    statuses = []
    for i in range(2, 12):
        with _client(running.url, f"127.0.0.{i}") as client:
            statuses.append(_login(client, "wrong-token-0123456789abcdef").status_code)
    assert statuses == [401] * 5 + [429] * 5
