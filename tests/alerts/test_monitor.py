"""The alert monitor against a real receiver, a real database and an injected clock:
each crossing is delivered once and signed, forecasts, Slack's shape, receivers that are
down or slow."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests import factories as f
from tests.alerts.conftest import SECRET, T0, Clock, MonitorFactory, deliveries, set_usage
from tests.support.gateway import free_port
from tests.support.webhook_receiver import WebhookReceiver
from tollway.alerts.detect import Alert
from tollway.alerts.payload import message
from tollway.governance.counters.base import CounterReading
from tollway.governance.counters.memory import MemoryCounterStore
from tollway.governance.engine import Plan, acquire_ops
from tollway.governance.inventory import snapshot_checks
from tollway.governance.model import budget_counter, request_counter
from tollway.store.database import Database
from tollway.store.tables import AlertDelivery

MINUTE = 60_000
KEY = f.virtual_key("vk-search", name="search service", rate_limit=f.rate_limit(requests=10, request_window="1h",
                                                                                id="rl-search"),
                    budget=f.budget(10, "1d", id="b-search"))
SNAPSHOT = f.snapshot(keys={f.key_value("search"): KEY})
REQUESTS, BUDGET = request_counter("rl-search"), budget_counter("b-search")


def hook(receiver: WebhookReceiver, path: str = "/hook", **extra) -> dict:
    return {"url": receiver.url(path), "secret": SECRET, **extra}


async def settled(db: Database, count: int, timeout_s: float = 5.0) -> list[AlertDelivery]:
    """The delivery rows once ``count`` of them are done (delivered, failed or dropped)."""
    deadline = time.monotonic() + timeout_s
    while True:
        rows = await deliveries(db)
        done = [row for row in rows if row.status in ("delivered", "failed", "dropped")]
        if len(done) >= count or time.monotonic() > deadline:
            return rows
        await asyncio.sleep(0.02)


async def test_each_threshold_is_delivered_once_per_window_and_signed(
        monitors: MonitorFactory, receiver: WebhookReceiver, db: Database) -> None:
    store, clock = MemoryCounterStore(), Clock(T0 + MINUTE)
    monitor = await monitors(SNAPSHOT, store, clock, webhooks=[hook(receiver)])
    await set_usage(store, REQUESTS, 5)
    assert await monitor.tick() == 1
    [first] = await receiver.wait_for("/hook", 1)
    assert first.signed_with(SECRET) and not first.signed_with("another-secret-0123456")
    body = first.json
    assert {k: body[k] for k in ("event", "level", "id", "name", "kind", "limit", "used", "reserved", "threshold",
                                 "reset_at", "window_start")} == {
        "event": "threshold_crossed", "level": "virtual_key", "id": "vk-search", "name": "search service",
        "kind": "requests", "limit": 10, "used": 5, "reserved": 0, "threshold": 0.5,
        "reset_at": "2026-12-01T10:00:00Z", "window_start": "2026-12-01T09:00:00Z"}
    assert first.headers["x-tollway-signature"].startswith(f"t={clock.ms // 1000},v1=")

    for _ in range(3):  # seen again and again: not delivered again
        clock.ms += 5_000
        assert await monitor.tick() == 0
    await set_usage(store, REQUESTS, 8)
    assert await monitor.tick() == 1
    await set_usage(store, REQUESTS, 10)
    assert await monitor.tick() == 1
    received = await receiver.wait_for("/hook", 3)
    assert [r.json["threshold"] for r in received] == [0.5, 0.8, 1.0]

    clock.ms = T0 + 61 * MINUTE  # the next window: its crossings are new
    await set_usage(store, REQUESTS, 6, window_start_ms=T0 + 60 * MINUTE)
    assert await monitor.tick() == 1
    assert (await receiver.wait_for("/hook", 4))[-1].json["window_start"] == "2026-12-01T10:00:00Z"
    rows = await settled(db, 4)
    assert [(row.status, row.attempts, row.response_status) for row in rows] == [("delivered", 1, 200)] * 4


async def test_a_jump_past_several_thresholds_delivers_the_highest_only(
        monitors: MonitorFactory, receiver: WebhookReceiver) -> None:
    store, clock = MemoryCounterStore(), Clock(T0 + MINUTE)
    monitor = await monitors(SNAPSHOT, store, clock, webhooks=[hook(receiver)])
    await set_usage(store, BUDGET, f.nano(9))
    assert await monitor.tick() == 1
    [only] = await receiver.wait_for("/hook", 1)
    assert only.json["threshold"] == 0.8 and only.json["unit"] == "usd"
    assert (only.json["limit"], only.json["used"]) == (10, 9)  # money in USD
    await set_usage(store, BUDGET, f.nano(9.5))
    assert await monitor.tick() == 0  # 0.5 was claimed with 0.8: not sent late


async def test_reserved_counts_towards_a_threshold(monitors: MonitorFactory, receiver: WebhookReceiver) -> None:
    store, clock = MemoryCounterStore(), Clock(T0 + MINUTE)
    monitor = await monitors(SNAPSHOT, store, clock, webhooks=[hook(receiver)])
    await set_usage(store, REQUESTS, 3)
    check = next(c for c, _ in snapshot_checks(SNAPSHOT) if c.counter == REQUESTS)
    await store.acquire(acquire_ops(Plan((check,), (2,)), clock.ms))  # two requests in flight
    assert await monitor.tick() == 1
    body = (await receiver.wait_for("/hook", 1))[0].json
    assert (body["used"], body["reserved"], body["threshold"]) == (3, 2, 0.5)


async def test_forecast_says_when_the_budget_runs_out_at_the_last_hours_rate(
        monitors: MonitorFactory, receiver: WebhookReceiver) -> None:
    store, clock = MemoryCounterStore(), Clock(T0)
    monitor = await monitors(SNAPSHOT, store, clock, webhooks=[hook(receiver)])
    await set_usage(store, BUDGET, f.nano(1))
    assert await monitor.tick() == 0  # one sample: no rate yet
    clock.ms = T0 + 60 * MINUTE  # $2 in the last hour, $7 left: out in 3 h 30 min, before the reset
    await set_usage(store, BUDGET, f.nano(3))
    assert await monitor.tick() == 1
    [alert] = await receiver.wait_for("/hook", 1)
    body = alert.json
    assert body["event"] == "forecast_exhaustion" and body["kind"] == "budget"
    assert body["exhausted_at"] == "2026-12-01T13:30:00Z" and body["reset_at"] == "2026-12-02T09:00:00Z"
    assert body["rate_per_hour"] == pytest.approx(2)
    assert "At the last hour's rate the budget of virtual key search service (vk-search) runs out in 3 h 30 min" \
        in body["message"]
    clock.ms += MINUTE
    await set_usage(store, BUDGET, f.nano(3.1))
    assert await monitor.tick() == 0  # once per window


async def test_forecast_is_off_when_configured_off(monitors: MonitorFactory, receiver: WebhookReceiver) -> None:
    store, clock = MemoryCounterStore(), Clock(T0)
    monitor = await monitors(SNAPSHOT, store, clock, webhooks=[hook(receiver)], forecast=False)
    for minutes, dollars in ((0, 1), (60, 3)):
        clock.ms = T0 + minutes * MINUTE
        await set_usage(store, BUDGET, f.nano(dollars))
        assert await monitor.tick() == 0


async def test_events_filter_and_slack_format(monitors: MonitorFactory, receiver: WebhookReceiver) -> None:
    store, clock = MemoryCounterStore(), Clock(T0 + MINUTE)
    monitor = await monitors(SNAPSHOT, store, clock, webhooks=[
        hook(receiver, "/slack", format="slack"),
        hook(receiver, "/forecasts-only", events=["forecast_exhaustion"]),
    ])
    await set_usage(store, REQUESTS, 8)
    assert await monitor.tick() == 1
    [slack] = await receiver.wait_for("/slack", 1)
    assert slack.signed_with(SECRET)
    assert set(slack.json) == {"text"}
    assert "virtual key search service (vk-search) crossed 80%: 8 of 10 requests used" in slack.json["text"]
    assert receiver.at("/forecasts-only") == []


@pytest.mark.parametrize(("status", "attempts", "error"), [
    (None, 3, "ClientConnectorError"),  # nothing listens: connection refused
    (503, 3, "HTTP 503"),
    (429, 3, "HTTP 429"),
    (404, 1, "HTTP 404"),  # a client error does not change on a retry
])
async def test_a_receiver_that_fails_is_retried_with_backoff_then_recorded_failed(
        monitors: MonitorFactory, receiver: WebhookReceiver, db: Database,
        status: int | None, attempts: int, error: str) -> None:
    url = f"http://127.0.0.1:{free_port()}/down" if status is None else receiver.url("/failing")
    receiver.statuses["/failing"] = status or 200
    store, clock = MemoryCounterStore(), Clock(T0 + MINUTE)
    monitor = await monitors(SNAPSHOT, store, clock, webhooks=[{"url": url, "secret": SECRET}], max_attempts=3,
                             retry_backoff=0.05)
    await set_usage(store, REQUESTS, 5)
    started = time.monotonic()
    await monitor.tick()
    [row] = await settled(db, 1)
    assert (row.status, row.attempts) == ("failed", attempts)
    assert error in (row.last_error or "")
    if status is not None:
        assert len(receiver.at("/failing")) == attempts
    if attempts == 3:
        assert time.monotonic() - started >= 0.05 + 0.1  # backoff 0.05 s, then 0.1 s


async def test_a_slow_receiver_times_out_without_holding_up_the_others(
        monitors: MonitorFactory, receiver: WebhookReceiver, db: Database) -> None:
    receiver.delays["/slow"] = 1.5
    keys = {f.key_value(f"k{i}"): f.virtual_key(f"vk-{i}", rate_limit=f.rate_limit(
        requests=10, request_window="1h", id=f"rl-{i}")) for i in range(3)}
    store, clock = MemoryCounterStore(), Clock(T0 + MINUTE)
    monitor = await monitors(f.snapshot(keys=keys), store, clock, webhooks=[hook(receiver, "/slow"), hook(receiver)],
                             timeout="1s", max_attempts=1, concurrency=1)
    for i in range(3):
        await set_usage(store, request_counter(f"rl-{i}"), 5)
    started = asyncio.get_running_loop().time()
    assert await monitor.tick() == 6
    fast = await receiver.wait_for("/hook", 3, timeout_s=3)
    assert max(r.at for r in fast) - started < 0.9  # before the first slow attempt even timed out
    rows = await settled(db, 6, timeout_s=8)
    slow = [row for row in rows if row.target.endswith("/slow")]
    assert {(row.status, row.last_error) for row in slow} == {("failed", "no answer within 1 s")}
    assert {row.status for row in rows if row.target.endswith("/hook")} == {"delivered"}


async def test_without_webhooks_nothing_is_read_or_claimed(monitors: MonitorFactory, db: Database) -> None:
    store, clock = MemoryCounterStore(), Clock(T0 + MINUTE)
    monitor = await monitors(SNAPSHOT, store, clock)
    await set_usage(store, REQUESTS, 10)
    assert await monitor.tick() == 0
    assert await deliveries(db) == []


def test_message_wording_of_a_request_limit() -> None:
    check = next(c for c, _ in snapshot_checks(SNAPSHOT) if c.counter == REQUESTS)
    alert = Alert("threshold_crossed", check, None, CounterReading(5, 0, T0), T0 + 60 * MINUTE, 0.5)
    assert message(alert, T0) == ("The request limit of virtual key search service (vk-search) crossed 50%: "
                                  "5 of 10 requests used; it resets at 2026-12-01T10:00:00Z.")


async def test_an_idle_receiver_lane_ends_and_a_later_delivery_starts_a_new_one(
        monitors: MonitorFactory, receiver: WebhookReceiver, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("tollway.alerts.delivery._IDLE_S", 0.05)
    store, clock = MemoryCounterStore(), Clock(T0 + MINUTE)
    monitor = await monitors(SNAPSHOT, store, clock, webhooks=[hook(receiver)])
    await set_usage(store, REQUESTS, 5)
    await monitor.tick()
    await receiver.wait_for("/hook", 1)
    for _ in range(100):
        if not monitor.dispatcher._lanes:
            break
        await asyncio.sleep(0.02)
    assert monitor.dispatcher._lanes == {}  # its workers ended
    await set_usage(store, REQUESTS, 8)
    await monitor.tick()
    assert [r.json["threshold"] for r in await receiver.wait_for("/hook", 2)] == [0.5, 0.8]


async def test_reservations_left_over_from_an_expired_window_do_not_alert_every_tick(
        monitors: MonitorFactory, receiver: WebhookReceiver) -> None:
    store, clock = MemoryCounterStore(), Clock(T0 + MINUTE)
    monitor = await monitors(SNAPSHOT, store, clock, webhooks=[hook(receiver)])
    await set_usage(store, REQUESTS, 0)
    check = next(c for c, _ in snapshot_checks(SNAPSHOT) if c.counter == REQUESTS)
    await store.acquire(acquire_ops(Plan((check,), (6,)), clock.ms))  # six long requests in flight
    assert await monitor.tick() == 1
    for minutes in (61, 62, 63):  # the window expired; the six still run
        clock.ms = T0 + minutes * MINUTE
        assert await monitor.tick() == 0
    assert len(await receiver.wait_for("/hook", 1)) == 1
