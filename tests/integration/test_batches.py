"""OpenAI files and batches through the real gateway and the `openai` SDK: the batch's
worst case charged to every limit at submission (at the batch price), refused when it does
not fit, settled from the results once the provider ends it (the follow-up triggered
directly), given back on cancel and failure, and settled by a new gateway on the same
database after a restart."""

from __future__ import annotations

import asyncio
import io
import math
from typing import Any

import aiohttp
import openai
import orjson
import pytest
from sqlalchemy import select

from tests.integration.conftest import mock_control
from tests.integration.test_governance import key, key_limits
from tests.support.gateway import RunningGateway, mock_providers
from tests.support.redis_server import require_redis
from tests.support.sdk_clients import openai_client
from tollway.governance.engine import hash_key, static_checks
from tollway.governance.model import Kind, budget_counter, request_counter, token_counter
from tollway.providers.client import Api
from tollway.proxy.worst_case import analyse
from tollway.store.batch_tables import Batch
from tollway.store.tables import RequestLog

ADMIN_TOKEN = "admin-token-batches-0123456789abcdef"
KEY = "tw-batch-a-0123456789abcdefghijklmnop"
OTHER = "tw-batch-b-0123456789abcdefghijklmnop"
MODEL = "openai/gpt-4o-mini"
# USD per million tokens: $1 in, $2 out, batches at half price.
PRICING = {MODEL: {"input": 1, "output": 2, "batch_ratio": 0.5}}
NANO_IN, NANO_OUT = 1_000, 2_000  # nano-USD per token at the standard price
PROMPT, OUTPUT = 10, 5  # what the mock reports for each answered line


def chat_line(index: int, max_tokens: int | None = 20, **body: Any) -> dict[str, Any]:
    request: dict[str, Any] = {"model": MODEL, "messages": [{"role": "user", "content": f"Question {index}"}], **body}
    if max_tokens is not None:
        request["max_tokens"] = max_tokens
    return {"custom_id": f"r{index}", "method": "POST", "url": "/v1/chat/completions", "body": request}


def jsonl(lines: list[dict[str, Any]]) -> bytes:
    return b"\n".join(orjson.dumps(line) for line in lines) + b"\n"


def worst(lines: list[dict[str, Any]]) -> tuple[int, int]:
    """(tokens, nano-USD at the batch price) the gateway charges for ``lines``, by the
    project's own worst-case analysis: the prompt bound plus the output cap of each."""
    tokens = cost = 0
    for line in lines:
        body = {**line["body"], "model": "gpt-4o-mini"}
        case = analyse(Api.CHAT, body, "gpt-4o-mini")
        output = case.output_tokens(case.cap if case.cap is not None else 128_000)
        tokens += case.prompt_tokens + output
        cost += math.ceil((case.prompt_tokens * NANO_IN + output * NANO_OUT) * 0.5)
    return tokens, cost


def batch_gateway(gateway, mock, keys: list[dict[str, Any]], **extra: Any) -> RunningGateway:
    return gateway({"providers": mock_providers(mock.url), "enforce_virtual_keys": True, "pricing": PRICING,
                    "admin_token": ADMIN_TOKEN, "governance": {"virtual_keys": keys}, **extra})


def sdk(running: RunningGateway, value: str = KEY) -> openai.AsyncOpenAI:
    return openai_client(running.v1, value)


def counters(running: RunningGateway, value: str = KEY) -> tuple[int, int, int]:
    """(requests, tokens, nano-USD) used on the key's counters."""
    limits = key_limits(running, value)
    state = running.counters()

    def used(name: str) -> int:
        return state[name].used if name in state else 0

    return (used(request_counter(limits.rate_limit.id)), used(token_counter(limits.rate_limit.id)),
            used(budget_counter(limits.budget.id)))


async def on_gateway(running: RunningGateway, coroutine: Any) -> Any:
    """Await ``coroutine`` on the gateway's loop without blocking this one (the mock runs here)."""
    return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coroutine, running.runtime.loop))


async def follow_up(running: RunningGateway) -> int:
    """Run the follow-up now (as its timer would), on every open batch."""
    return await on_gateway(running, running.runtime.batches.follower.tick(all_open=True))


def log_rows(running: RunningGateway) -> list[RequestLog]:
    async def read() -> list[RequestLog]:
        await running.runtime.log_writer.flush()
        async with running.runtime.db.session() as session:
            return list(await session.scalars(select(RequestLog).order_by(RequestLog.id)))

    return running.call(read())


LIMITS = {"rate_limit": {"request_max_limit": 100, "request_reset_duration": "1d",
                         "token_max_limit": 1_000_000, "token_reset_duration": "1d"},
          "budget": {"max_limit": 10, "reset_duration": "1d"}}


async def upload(client: openai.AsyncOpenAI, lines: list[dict[str, Any]]) -> str:
    uploaded = await client.files.create(file=("batch.jsonl", io.BytesIO(jsonl(lines))), purpose="batch")
    return uploaded.id


async def test_a_batch_is_charged_its_worst_case_at_submission_and_settled_from_its_results(gateway, mock) -> None:
    running = batch_gateway(gateway, mock, [key(KEY, **LIMITS)])
    client = sdk(running)
    lines = [chat_line(i) for i in range(3)] + [chat_line(3, n=2)]  # n=2: two answers' worth of output
    file_id = await upload(client, lines)
    assert counters(running) == (1, 0, 0)  # the upload is one request, charged nothing
    sent = mock.state.requests[-1]
    assert sent["path"] == "/v1/files"
    batch = await client.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions",
                                         completion_window="24h")
    tokens, cost = worst(lines)
    assert counters(running) == (1 + 4, tokens, cost)  # one request per line
    assert (await client.batches.retrieve(batch.id)).status == "in_progress"
    assert await follow_up(running) == 0  # not ended: nothing settled, nothing given back
    assert counters(running) == (6, tokens, cost)

    await mock_control(mock, "POST", f"/_mock/batches/{batch.id}/complete")
    assert await follow_up(running) == 1
    actual_tokens = 4 * (PROMPT + OUTPUT)
    actual_cost = 4 * math.ceil((PROMPT * NANO_IN + OUTPUT * NANO_OUT) * 0.5)
    assert counters(running) == (6, actual_tokens, actual_cost)
    assert await follow_up(running) == 0  # settled once
    done = await client.batches.retrieve(batch.id)
    assert done.status == "completed" and done.output_file_id
    content = await client.files.content(done.output_file_id)  # the batch's output file: its key may read it
    assert len(content.read().splitlines()) == 4

    rows = [row for row in log_rows(running) if row.route == "batches"]
    assert [row.request_id for row in rows] == [batch.id, batch.id]  # submission, settlement
    assert float(rows[0].cost) == 0 and float(rows[1].cost) == pytest.approx(actual_cost / 1e9)
    assert rows[1].prompt_tokens == 4 * PROMPT and rows[1].completion_tokens == 4 * OUTPUT
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as session:
        async with session.get(running.url + "/api/usage/spend", params={"group_by": "route"}) as response:
            report = await response.json()
    by_route = {row["group"]: row for row in report["series"]}
    assert by_route["batches"]["spend"] == pytest.approx(actual_cost / 1e9)
    assert by_route["batches"]["completion_tokens"] == 4 * OUTPUT
    assert running.runtime.enforcer.reservations_in_flight == 0


async def test_the_lines_reach_the_provider_rewritten_for_it_and_exactly_as_charged(gateway, mock, oai) -> None:
    running = batch_gateway(gateway, mock, [key(KEY, **LIMITS)])
    lines = [chat_line(0), chat_line(1)]
    file_id = await upload(sdk(running), lines)
    uploaded = await mock_control(mock, "GET", "/_mock/requests?path=/v1/files")
    assert uploaded[-1]["headers"]["authorization"] == "Bearer sk-test-openai"
    stored = await oai.files.content(file_id)  # what the provider holds, asked of it directly
    sent = [orjson.loads(line) for line in stored.read().splitlines()]
    assert [line["body"]["model"] for line in sent] == ["gpt-4o-mini", "gpt-4o-mini"]  # the provider's own name
    assert sent == [{**line, "body": {**line["body"], "model": "gpt-4o-mini"}} for line in lines]


async def test_a_batch_that_does_not_fit_is_refused_and_charges_nothing(gateway, mock) -> None:
    lines = [chat_line(i, max_tokens=1000) for i in range(5)]
    _, cost = worst(lines)
    budget = {"max_limit": (cost - 1) / 1e9, "reset_duration": "1d"}  # one nano-dollar short
    running = batch_gateway(gateway, mock, [key(KEY, rate_limit=LIMITS["rate_limit"], budget=budget)])
    client = sdk(running)
    file_id = await upload(client, lines)
    before = len(mock.state.requests)
    with pytest.raises(openai.APIStatusError) as caught:
        await client.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h")
    assert caught.value.status_code == 402 and caught.value.body["type"] == "budget_exceeded"
    assert caught.value.body["scope"]["level"] == "virtual_key"
    assert len(mock.state.requests) == before  # the provider never saw it
    assert counters(running) == (1, 0, 0)


async def test_a_batch_with_more_lines_than_requests_left_is_refused(gateway, mock) -> None:
    rate = {"request_max_limit": 4, "request_reset_duration": "1h"}
    running = batch_gateway(gateway, mock, [key(KEY, rate_limit=rate, budget=LIMITS["budget"])])
    client = sdk(running)
    file_id = await upload(client, [chat_line(i) for i in range(4)])  # 1 request used: 3 left, 4 lines
    with pytest.raises(openai.RateLimitError) as caught:
        await client.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h")
    assert caught.value.body["type"] == "request_limited"


async def test_a_cancelled_batch_gives_back_what_it_did_not_use(gateway, mock) -> None:
    running = batch_gateway(gateway, mock, [key(KEY, **LIMITS)])
    client = sdk(running)
    file_id = await upload(client, [chat_line(i) for i in range(3)])
    batch = await client.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions",
                                        completion_window="24h")
    assert counters(running)[2] > 0
    cancelled = await client.batches.cancel(batch.id)
    assert cancelled.status == "cancelled"
    await follow_up(running)
    assert counters(running) == (1 + 1, 0, 0)  # the upload and the cancel; the lines never ran: all given back


async def test_a_failed_batch_gives_back_its_whole_charge(gateway, mock) -> None:
    running = batch_gateway(gateway, mock, [key(KEY, **LIMITS)])
    client = sdk(running)
    file_id = await upload(client, [chat_line(i) for i in range(2)])
    batch = await client.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions",
                                        completion_window="24h")
    await mock_control(mock, "POST", f"/_mock/batches/{batch.id}/complete", {"status": "failed"})
    assert await follow_up(running) == 1
    assert counters(running) == (1, 0, 0)


async def test_an_expired_batch_is_charged_for_the_lines_that_ran(gateway, mock) -> None:
    running = batch_gateway(gateway, mock, [key(KEY, **LIMITS)])
    client = sdk(running)
    file_id = await upload(client, [chat_line(i) for i in range(4)])
    batch = await client.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions",
                                        completion_window="24h")
    await mock_control(mock, "POST", f"/_mock/batches/{batch.id}/complete", {"status": "expired", "succeeded": 1})
    await follow_up(running)
    assert counters(running) == (1 + 1, PROMPT + OUTPUT, math.ceil((PROMPT * NANO_IN + OUTPUT * NANO_OUT) * 0.5))


async def test_a_new_gateway_on_the_same_database_settles_a_batch_submitted_before_a_restart(gateway, mock,
                                                                                              tmp_path) -> None:
    database = f"sqlite:///{tmp_path}/shared.db"
    first = batch_gateway(gateway, mock, [key(KEY, **LIMITS)], database_url=database)
    client = sdk(first)
    file_id = await upload(client, [chat_line(i) for i in range(3)])
    batch = await client.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions",
                                        completion_window="24h")
    charged = counters(first)
    first.stop()  # a graceful stop flushes the counters

    second = batch_gateway(gateway, mock, [key(KEY, **LIMITS)], database_url=database)
    assert counters(second) == charged
    await mock_control(mock, "POST", f"/_mock/batches/{batch.id}/complete")
    assert await follow_up(second) == 1
    assert counters(second)[1:] == (3 * (PROMPT + OUTPUT), 3 * math.ceil((PROMPT * NANO_IN + OUTPUT * NANO_OUT) * 0.5))
    retrieved = await sdk(second).batches.retrieve(batch.id)  # the batch still belongs to its key
    assert retrieved.id == batch.id


async def test_two_followers_settle_a_batch_once(gateway, mock, tmp_path) -> None:
    running = batch_gateway(gateway, mock, [key(KEY, **LIMITS)])
    client = sdk(running)
    file_id = await upload(client, [chat_line(i) for i in range(2)])
    batch = await client.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions",
                                        completion_window="24h")
    await mock_control(mock, "POST", f"/_mock/batches/{batch.id}/complete")
    runtime = running.runtime
    other = type(runtime.batches.follower)(runtime.batches.follower._gate, runtime.settings.batches)

    async def both() -> list[bool]:
        return list(await asyncio.gather(runtime.batches.follower.follow(batch.id), other.follow(batch.id)))

    assert sorted(await on_gateway(running, both())) == [False, True]
    assert counters(running)[1] == 2 * (PROMPT + OUTPUT)  # refunded once, not twice

    async def row() -> Batch | None:
        async with runtime.db.session() as session:
            return await session.get(Batch, batch.id)

    settled = running.call(row())
    assert settled is not None and settled.state == "settled" and settled.actual_tokens == 2 * (PROMPT + OUTPUT)


@pytest.fixture(scope="module")
def shared_redis():
    server = require_redis()
    yield server
    server.stop()


async def test_two_nodes_on_redis_and_postgresql_share_the_charge_and_one_settles_it(gateway, mock, postgres_server,
                                                                                      shared_redis) -> None:
    shared = {"database_url": postgres_server.create_database(),
              "counters": {"backend": "redis", "url": shared_redis.url}}
    nodes = [batch_gateway(gateway, mock, [key(KEY, **LIMITS)], **shared) for _ in range(2)]
    client = sdk(nodes[0])
    lines = [chat_line(i) for i in range(3)]
    batch = await client.batches.create(input_file_id=await upload(client, lines), endpoint="/v1/chat/completions",
                                        completion_window="24h")
    tokens, cost = worst(lines)
    assert counters(nodes[1]) == (4, tokens, cost)  # one set of limits: the other node sees the charge
    assert (await sdk(nodes[1]).batches.retrieve(batch.id)).id == batch.id  # and knows whose batch it is
    await mock_control(mock, "POST", f"/_mock/batches/{batch.id}/complete")
    settled = await asyncio.gather(*(follow_up(node) for node in nodes))
    assert sorted(settled) == [0, 1]  # settled once, by one of them
    assert counters(nodes[0])[1:] == (3 * (PROMPT + OUTPUT), 3 * math.ceil((PROMPT * NANO_IN + OUTPUT * NANO_OUT) * 0.5))


async def test_of_two_batches_submitted_at_once_only_the_one_that_fits_runs(gateway, mock) -> None:
    lines = [chat_line(i, max_tokens=500) for i in range(3)]
    _, cost = worst(lines)
    budget = {"max_limit": (cost * 1.5) / 1e9, "reset_duration": "1d"}  # room for one batch, not two
    running = batch_gateway(gateway, mock, [key(KEY, rate_limit=LIMITS["rate_limit"], budget=budget)])
    client = sdk(running)
    file_id = await upload(client, lines)

    async def submit() -> int:
        try:
            await client.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions",
                                        completion_window="24h")
        except openai.APIStatusError as exc:
            return exc.status_code
        return 200

    assert sorted(await asyncio.gather(*(submit() for _ in range(8)))) == [200] + [402] * 7
    assert counters(running)[2] == cost


async def test_an_unpriced_model_is_refused_where_prices_are_required(gateway, mock) -> None:
    running = batch_gateway(gateway, mock, [key(KEY, **LIMITS)], require_price=True)
    line = {**chat_line(0), "body": {**chat_line(0)["body"], "model": "openai/some-unpriced-model-xyz"}}
    with pytest.raises(openai.BadRequestError) as caught:
        await upload(sdk(running), [line])
    assert caught.value.body["code"] == "model_unpriced" and "line 1" in caught.value.message


async def test_every_level_is_charged_and_any_level_can_refuse(gateway, mock) -> None:
    lines = [chat_line(i) for i in range(2)]
    tokens, cost = worst(lines)
    rate = {"request_max_limit": 100, "request_reset_duration": "1d", "token_max_limit": 10**6,
            "token_reset_duration": "1d"}
    money = {"max_limit": 10, "reset_duration": "1d"}
    providers = mock_providers(mock.url, openai={"rate_limit": rate, "budget": money})
    governance = {
        "customers": [{"id": "acme", "name": "Acme", "budget": money, "rate_limit": rate}],
        "teams": [{"id": "search", "name": "Search", "customer_id": "acme", "budget": money, "rate_limit": rate}],
        "virtual_keys": [key(KEY, team_id="search", provider_configs=[{"provider": "openai", "budget": money,
                                                                         "rate_limit": rate}], **LIMITS),
                         key(OTHER, id="other", team_id="search")],
        "model_configs": [{"model_name": "gpt-4o-mini", "provider": "openai", "budget": money, "rate_limit": rate},
                          {"model_name": "gpt-4o-mini", "budget": {"max_limit": cost * 1.5 / 1e9,
                                                                   "reset_duration": "1d"}}]}
    running = gateway({"providers": providers, "enforce_virtual_keys": True, "pricing": PRICING,
                       "governance": governance})
    client = sdk(running)
    await client.batches.create(input_file_id=await upload(client, lines), endpoint="/v1/chat/completions",
                                completion_window="24h")
    snapshot = running.runtime.snapshot
    checks = static_checks(snapshot, snapshot.keys_by_hash[hash_key(KEY)], "openai", "gpt-4o-mini")
    state = running.counters()
    levels = set()
    for check in checks:
        if check.kind is Kind.IN_FLIGHT:
            continue
        expected = {Kind.REQUESTS: 1 + 2, Kind.TOKENS: tokens, Kind.BUDGET: cost}[check.kind]
        assert state[check.counter].used == expected, (check.scope, check.kind)
        levels.add(check.scope.level.value)
    assert levels == {"provider", "model", "virtual_key", "provider_config", "team", "customer"}

    other = sdk(running, OTHER)  # same model, same team: the model-wide budget has no room for a second batch
    with pytest.raises(openai.APIStatusError) as caught:
        await other.batches.create(input_file_id=await upload(other, lines), endpoint="/v1/chat/completions",
                                   completion_window="24h")
    assert caught.value.status_code == 402 and caught.value.body["scope"]["level"] == "model"
