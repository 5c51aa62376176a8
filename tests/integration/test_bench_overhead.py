"""`bench/overhead.py` keeps measuring what it says: every route scenario of
`bench/route_overhead.py` is answered 200 by the mock directly and by a gateway configured
as the benchmark configures its governed one (a wrong body would otherwise be timed as a
fast error), and every installed transport of `bench/transports.py` completes requests
against the mock. The figures themselves are the benchmark's, not a test's."""

from __future__ import annotations

import sys
from pathlib import Path

import aiohttp
import pytest

from tollway.testing.mock_upstream import MockUpstream

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from overhead import VK, bench_config  # bench/ is on the path only from here
from route_overhead import SCENARIOS, Scenario, add_route_providers
from transports import TRANSPORTS, available, chat_body, run


def _port(mock: MockUpstream) -> int:
    return int(mock.url.rsplit(":", 1)[1])


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda scenario: scenario.name)
async def test_each_route_scenario_is_answered_by_the_mock_and_the_governed_gateway(
        gateway, mock: MockUpstream, http: aiohttp.ClientSession, tmp_path: Path, scenario: Scenario) -> None:
    config = add_route_providers(bench_config(_port(mock), tmp_path / "bench.db"), _port(mock))
    running = gateway(config)
    for target, base, key in (("direct", mock.url, "sk-mock"), ("governed", running.url, VK)):
        path, headers, body = scenario.request(target, key)
        async with http.post(base + path, data=body, headers=headers) as response:
            answer = await response.read()
        assert response.status == 200, (target, answer[:300])
        assert (b"data: " in answer) == scenario.stream
    assert mock.state.stats.requests == 2  # the gateway's request reached the mock too
    spent = running.counters()
    assert any(state.used > 0 for state in spent.values()), "the governed request moved no counter"


@pytest.mark.parametrize("stream", [False, True], ids=["non-stream", "stream"])
@pytest.mark.parametrize("name", TRANSPORTS)
async def test_each_installed_transport_completes_requests(mock: MockUpstream, name: str, stream: bool) -> None:
    if not available(name):
        pytest.skip(f"{name} is not installed (pip install -e '.[bench]')")
    headers = {"Content-Type": "application/json", "Authorization": "Bearer sk-bench"}
    result = await run(name, mock.url + "/v1/chat/completions", headers, chat_body(stream), 2, 0.2, stream)
    assert result["n"] > 0 and result["errors"] == 0
    assert result["cpu_us_per_req"] > 0 and result["p50_ms"] <= result["p99_ms"]
