"""The spend API's one-second cache and the request log's keyset pages and counts,
through a real gateway (SQLite and PostgreSQL) with an injected clock."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx2
import pytest

from tests.api.admin_token_support import client_of, create_token
from tests.api.support import MockThread, gateway_config
from tests.support.gateway import RunningGateway, start_gateway
from tollway.api.report_cache import ReportCache

KEYS = "/api/governance/virtual-keys"
SPEND = "/api/usage/spend"
NOW_MS = 1_796_000_000_000  # 2026-11-30T00:53:20Z: the clock stands still unless a test moves it


class Clock:
    def __init__(self) -> None:
        self.ms = NOW_MS

    def __call__(self) -> int:
        return self.ms


@pytest.fixture(scope="module")
def clock() -> Clock:
    return Clock()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def gateway(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, upstream: MockThread,
            clock: Clock) -> Iterator[RunningGateway]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('reports')}/tollway.db"
    else:
        url = request.getfixturevalue("postgres_server").create_database()
    running = start_gateway(gateway_config(url, upstream.url), clock_ms=clock)
    yield running
    running.stop()


def _chat(gateway: RunningGateway, value: str, tags: str | None = None) -> None:
    headers = {"Authorization": f"Bearer {value}", **({"x-tollway-tags": tags} if tags else {})}
    reply = httpx2.post(f"{gateway.v1}/chat/completions", headers=headers,
                        json={"model": "openai/gpt-4o-mini", "max_tokens": 3,
                              "messages": [{"role": "user", "content": "hi"}]})
    assert reply.status_code == 200, reply.text


def test_a_spend_report_is_computed_once_a_second_and_fresh_after_it(gateway: RunningGateway, api: httpx2.Client,
                                                                     clock: Clock) -> None:
    key = api.post(KEYS, json={"name": "cached"}).json()["virtual_key"]
    asked = {"virtual_key_id": key["id"], "group_by": "model"}
    assert api.get(SPEND, params=asked).json()["total"]["requests"] == 0
    _chat(gateway, key["value"])
    clock.ms += 999
    assert api.get(SPEND, params=asked).json()["total"]["requests"] == 0  # the answer of 999 ms ago
    assert api.get(SPEND, params={**asked, "interval": "hour"}).json()["total"]["requests"] == 1  # another query
    clock.ms += 1
    fresh = api.get(SPEND, params=asked).json()
    assert fresh["total"]["requests"] == 1 and [row["group"] for row in fresh["series"]] == ["gpt-4o-mini"]


def test_log_pages_follow_a_keyset_cursor_and_count_from_the_rollups(gateway: RunningGateway,
                                                                      api: httpx2.Client, clock: Clock) -> None:
    key = api.post(KEYS, json={"name": "paged"}).json()["virtual_key"]
    for _ in range(5):
        _chat(gateway, key["value"])
        clock.ms += 1  # distinct times; a tie at the same time is ordered by id
    _chat(gateway, key["value"])
    mine = {"virtual_key_id": key["id"], "limit": 2}
    seen: list[int] = []
    first = api.get("/api/logs", params=mine).json()
    page = first
    while True:
        seen += [row["id"] for row in page["logs"]]
        assert page["count"] == 6
        if page["next_before_id"] is None:
            break
        page = api.get("/api/logs", params={**mine, "before_id": page["next_before_id"]}).json()
    everything = api.get("/api/logs", params={"virtual_key_id": key["id"], "limit": 100}).json()
    assert seen == [row["id"] for row in everything["logs"]] and len(seen) == len(set(seen)) == 6
    assert api.get("/api/logs", params={"virtual_key_id": key["id"], "decision": "allow"}).json()["count"] == 6
    total = api.get("/api/logs", params={"limit": 1}).json()
    assert total["count"] == len(api.get("/api/logs", params={"limit": 1000}).json()["logs"])
    wrong = api.get("/api/logs", params={"before_id": 2**62})
    assert wrong.status_code == 400 and wrong.json()["error"]["field"] == "before_id"


async def test_concurrent_askers_share_one_computation_and_errors_are_not_kept() -> None:
    now = [0]
    cache = ReportCache(lambda: now[0], ttl_ms=1000)
    computed = 0
    release = asyncio.Event()

    async def compute() -> int:
        nonlocal computed
        computed += 1
        await release.wait()
        return computed

    askers = [asyncio.create_task(cache.get("q", compute)) for _ in range(20)]
    await asyncio.sleep(0)
    release.set()
    assert await asyncio.gather(*askers) == [1] * 20 and computed == 1
    askers[0].cancel()  # a finished asker going away changes nothing
    now[0] = 999
    assert await cache.get("q", compute) == 1
    now[0] = 1000
    assert await cache.get("q", compute) == 2

    async def failing() -> int:
        raise RuntimeError("database down")

    now[0] = 5000
    with pytest.raises(RuntimeError):
        await cache.get("q", failing)
    assert await cache.get("q", compute) == 3  # the failure was not cached


async def test_an_asker_that_goes_away_does_not_cancel_the_others() -> None:
    cache = ReportCache(lambda: 0)
    release = asyncio.Event()

    async def compute() -> str:
        await release.wait()
        return "answer"

    leaving, staying = (asyncio.create_task(cache.get("q", compute)) for _ in range(2))
    await asyncio.sleep(0)
    leaving.cancel()
    release.set()
    assert await staying == "answer"


def test_top_ranks_the_groups_that_spent_most_and_the_total_keeps_every_group(gateway: RunningGateway,
                                                                            api: httpx2.Client, clock: Clock) -> None:
    team = api.post("/api/governance/teams", json={"name": "ranked"}).json()["team"]
    spent = {}
    for name, requests in (("one", 1), ("three", 3), ("two", 2)):
        key = api.post(KEYS, json={"name": name, "team_id": team["id"]}).json()["virtual_key"]
        spent[name] = key["id"]
        for _ in range(requests):
            _chat(gateway, key["value"])
    clock.ms += 1000
    asked = {"team_id": team["id"], "group_by": "key", "top": 2}
    ranked = api.get(SPEND, params=asked).json()
    assert [row["group"] for row in ranked["series"]] == [spent["three"], spent["two"]]
    assert [row["requests"] for row in ranked["series"]] == [3, 2] and ranked["total"]["requests"] == 6
    for wrong in ({"top": 2}, {**asked, "interval": "day"}, {**asked, "top": 0}):
        answer = api.get(SPEND, params=wrong)
        assert answer.status_code in (400, 422) and answer.json()["error"]["field"] == "top", wrong


def test_a_start_after_now_without_an_end_is_refused_naming_start(api: httpx2.Client, clock: Clock) -> None:
    future = "3511-07-27T14:03:41Z"  # the fuzzer's find: end defaults to now, so the range ran backwards
    reply = api.get(SPEND, params={"start": future})
    assert reply.status_code == 400 and reply.json()["error"]["field"] == "start", reply.text
    assert api.get(SPEND, params={"start": future, "end": "3511-07-28T00:00:00Z"}).status_code == 200


def _denied(gateway: RunningGateway, value: str) -> None:
    reply = httpx2.post(f"{gateway.v1}/chat/completions", headers={"Authorization": f"Bearer {value}"},
                        json={"model": "openai/gpt-4o-mini", "max_tokens": 3,
                              "messages": [{"role": "user", "content": "hi"}]})
    assert reply.status_code == 429, reply.text


def test_the_log_count_of_a_decision_comes_from_the_rollups_and_equals_the_rows(gateway: RunningGateway,
                                                                              api: httpx2.Client, clock: Clock) -> None:
    key = api.post(KEYS, json={"name": "limited", "rate_limit": {"request_max_limit": 2,
                                                                 "request_reset_duration": "1h"}}).json()["virtual_key"]
    for _ in range(2):
        _chat(gateway, key["value"])
    for _ in range(3):
        _denied(gateway, key["value"])
    mine = api.get("/api/logs", params={"virtual_key_id": key["id"], "limit": 100}).json()
    decisions = {row["decision"] for row in mine["logs"]} - {"allow"}
    assert len(mine["logs"]) == 5 and len(decisions) == 1
    [denial] = decisions
    for decision, requests in (("allow", 2), (denial, 3)):
        assert api.get("/api/logs", params={"virtual_key_id": key["id"], "decision": decision}).json()["count"] == requests
    for decision in ("allow", denial, "no_such_decision"):  # the decision alone: its totals, every key's rows
        listed = api.get("/api/logs", params={"decision": decision, "limit": 1000}).json()
        assert listed["count"] == len(listed["logs"]) == sum(row["decision"] == decision
                                                              for row in api.get("/api/logs", params={"limit": 1000}).json()["logs"])
    clock.ms += 1000
    by_decision = api.get(SPEND, params={"virtual_key_id": key["id"], "group_by": "decision"}).json()
    assert {row["group"]: row["requests"] for row in by_decision["series"]} == {"allow": 2, denial: 3}


def test_a_batch_answers_each_report_as_the_spend_api_does(gateway: RunningGateway, api: httpx2.Client,
                                                           clock: Clock) -> None:
    key = api.post(KEYS, json={"name": "batched"}).json()["virtual_key"]
    for _ in range(2):
        _chat(gateway, key["value"], tags="batch:a")
    clock.ms += 1000
    start = "2026-11-01T00:00:00Z"
    asked = [{}, {"start": start}, {"start": start, "interval": "hour"}, {"start": start, "group_by": "key", "top": 3},
             {"start": start, "group_by": "tag"}, {"start": start, "virtual_key_id": key["id"], "group_by": "decision"},
             {"start": start, "tag": "Batch:A", "group_by": "model", "interval": "day"}]
    answers = api.post(SPEND + "/batch", json={"reports": asked}).json()["reports"]
    assert [answer["total"]["requests"] for answer in answers][-2:] == [2, 2]
    for one, answer in zip(asked, answers, strict=True):
        assert api.get(SPEND, params=one).json() == answer, one


def test_a_bad_report_in_a_batch_is_refused_naming_it(api: httpx2.Client, clock: Clock) -> None:
    good = {"start": "2026-11-01T00:00:00Z"}
    for wrong, field in (({"top": 2}, "reports[1].top"), ({"start": "3511-07-27T14:03:41Z"}, "reports[1].start"),
                         ({"start": "2026-11-02T00:00:00Z", "end": "2026-11-01T00:00:00Z"}, "reports[1].start"),
                         ({"tag": " "}, "reports[1].tag")):
        reply = api.post(SPEND + "/batch", json={"reports": [good, wrong]})
        assert reply.status_code == 400 and reply.json()["error"]["field"] == field, (wrong, reply.text)
    for body in ({"reports": [good, {"group_by": "colour"}]}, {"reports": [good, {"status": 99}]},
                 {"reports": [good, {"team": "t"}]}, {"reports": []}, {"reports": [good] * 21}, {}):
        reply = api.post(SPEND + "/batch", json=body)
        assert reply.status_code == 422, (body, reply.text)
        assert "reports" in reply.text, reply.text


def test_a_report_names_its_keys_teams_and_customers_for_those_who_read_them(gateway: RunningGateway,
                                                                             api: httpx2.Client, clock: Clock) -> None:
    team = api.post("/api/governance/teams", json={"name": "named team"}).json()["team"]
    kept, gone = (api.post(KEYS, json={"name": name, "team_id": team["id"]}).json()["virtual_key"]
                  for name in ("kept key", "gone key"))
    for key in (kept, gone):
        _chat(gateway, key["value"])
    assert api.delete(f"{KEYS}/{gone['id']}").status_code in (200, 204)
    clock.ms += 1000
    asked = {"team_id": team["id"], "group_by": "key", "names": "true"}
    named = {row["group"]: row["name"] for row in api.get(SPEND, params=asked).json()["series"]}
    assert named == {kept["id"]: "kept key", gone["id"]: None}  # deleted: its spend stays, its name is gone
    [by_team] = api.post(SPEND + "/batch", json={"reports": [{**asked, "group_by": "team", "names": True}]}).json()["reports"]
    assert [(row["group"], row["name"]) for row in by_team["series"]] == [(team["id"], "named team")]
    assert "name" not in api.get(SPEND, params={"team_id": team["id"], "group_by": "key"}).json()["series"][0]
    wrong = api.get(SPEND, params={"group_by": "model", "names": "true"})
    assert wrong.status_code == 400 and wrong.json()["error"]["field"] == "names"
    with client_of(gateway, create_token(gateway, "usage_reader")) as reader:  # reads spend, not the keys
        refused = reader.get(SPEND, params=asked)
        assert refused.status_code == 403 and refused.json()["error"]["field"] == "names", refused.text
        batch = reader.post(SPEND + "/batch", json={"reports": [{"start": "2026-11-01T00:00:00Z"}, {**asked, "names": True}]})
        assert batch.status_code == 403 and batch.json()["error"]["field"] == "reports[1].names", batch.text
        assert reader.get(SPEND, params={**asked, "names": "false"}).status_code == 200
