"""The admin UI's parts without a browser: sessions, form translation, number and time
formats, the chart, the in-process API client, and the HTTP rules of `/ui`."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx2
import pytest

from tests.api.support import ADMIN_TOKEN
from tests.support.gateway import RunningGateway
from tollway.ui import forms, present
from tollway.ui.charts import Bar, bar_chart
from tollway.ui.client import ApiProblem, ManagementClient, path
from tollway.ui.forms import Form, FormError
from tollway.ui.session import Sessions


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_a_session_cookie_is_signed_expires_and_can_be_revoked() -> None:
    clock = Clock()
    sessions = Sessions("admin-token-0123456789", ttl_s=60, clock=clock)
    cookie, session = sessions.issue()
    assert "admin-token" not in cookie
    assert sessions.verify(cookie) == session
    expires, nonce, signature = cookie.split(".")
    assert sessions.verify(f"{int(expires) + 999}.{nonce}.{signature}") is None  # extended by hand
    assert sessions.verify(cookie[:-1] + ("B" if cookie.endswith("A") else "A")) is None
    assert Sessions("another-admin-token-0123", clock=clock).verify(cookie) is None
    clock.now += 61
    assert sessions.verify(cookie) is None
    clock.now -= 61
    sessions.revoke(session)
    assert sessions.verify(cookie) is None


def test_the_form_token_and_the_flash_message_are_bound_to_the_server_key() -> None:
    sessions = Sessions("admin-token-0123456789")
    _, session = sessions.issue()
    token = sessions.form_token(session)
    assert sessions.form_token_valid(session, token)
    assert not sessions.form_token_valid(session, token[:-1] + ("B" if token.endswith("A") else "A"))
    sealed = sessions.seal_flash("ok", "Key saved.")
    assert sessions.open_flash(sealed) == ("ok", "Key saved.")
    assert sessions.open_flash(sealed.replace(".", ".x", 1)) is None


@pytest.mark.parametrize(("fields", "budget", "rate_limit"), [
    ({}, None, None),
    ({"budget_max_limit": "10", "budget_reset_duration": "1M", "budget_calendar_aligned": "on"},
     {"max_limit": "10", "reset_duration": "1M", "calendar_aligned": True}, None),
    ({"request_max_limit": "60", "request_reset_duration": "1m"}, None,
     {"request_max_limit": "60", "request_reset_duration": "1m", "token_max_limit": None,
      "token_reset_duration": None}),
])
def test_limit_fields_become_api_bodies(fields: dict[str, str], budget: Any, rate_limit: Any) -> None:
    form = Form(fields.items())
    assert forms.budget(form) == budget
    assert forms.rate_limit(form) == rate_limit


def test_limit_modes_are_sent_where_the_form_has_them() -> None:
    budget = {"budget_max_limit": "10", "budget_reset_duration": "1d"}
    tokens = {"token_max_limit": "1000", "token_reset_duration": "1h"}
    chosen = Form({**budget, **tokens, "budget_enforcement": "strict", "budget_on_insufficient": "",
                   "rate_enforcement": "", "rate_on_insufficient": "clamp"}.items())
    assert forms.budget(chosen) == {"max_limit": "10", "reset_duration": "1d", "calendar_aligned": False,
                                    "enforcement": "strict", "on_insufficient": None}  # empty: the global default
    assert forms.rate_limit(chosen)["enforcement"] is None and forms.rate_limit(chosen)["on_insufficient"] == "clamp"
    without = Form({**budget, **tokens}.items())  # a form without the fields leaves stored modes alone
    assert "enforcement" not in forms.budget(without) and "on_insufficient" not in forms.rate_limit(without)


def test_a_limit_given_by_half_is_refused_with_a_sentence() -> None:
    with pytest.raises(FormError) as error:
        forms.rate_limit(Form([("token_max_limit", "1000")]))
    assert error.value.problem.fields == {"rate_limit.token_max_limit"}
    assert "token limit: give both an amount and a reset period (the reset period is empty)" in \
        forms.problem_lines(error.value.problem)[0]


@pytest.mark.parametrize(("fields", "concurrency"), [
    ({}, None),
    ({"max_in_flight": "", "queue_timeout_ms": ""}, None),
    ({"max_in_flight": "5"}, {"max_in_flight": "5", "queue_timeout_ms": 0}),
    ({"max_in_flight": "5", "queue_timeout_ms": "2500"}, {"max_in_flight": "5", "queue_timeout_ms": "2500"}),
])
def test_concurrency_fields_become_api_bodies(fields: dict[str, str], concurrency: Any) -> None:
    assert forms.concurrency(Form(fields.items())) == concurrency


def test_shadow_boxes_set_each_limits_mode_only_where_the_form_showed_them() -> None:
    limits = [("budget_max_limit", "5"), ("budget_reset_duration", "1d"), ("request_max_limit", "9"),
              ("request_reset_duration", "1m"), ("max_in_flight", "2")]
    shown = Form([*limits, ("modes_shown", "1"), ("budget_shadow", "on"), ("concurrency_shadow", "on")])
    assert forms.budget(shown)["mode"] == "shadow" and forms.concurrency(shown)["mode"] == "shadow"
    assert forms.rate_limit(shown)["mode"] == "enforce"  # shown and not ticked: switched (back) to enforce
    hidden = Form([*limits, ("budget_shadow", "on")])  # no marker: a form without the boxes
    assert all("mode" not in body for body in (forms.budget(hidden), forms.rate_limit(hidden),
                                               forms.concurrency(hidden)))  # the stored mode stays
    prefixed = Form([("pc0_max_in_flight", "1"), ("pc0_modes_shown", "1"), ("pc0_concurrency_shadow", "on")])
    assert forms.concurrency(prefixed, "pc0_")["mode"] == "shadow"


def test_a_queue_wait_without_a_maximum_is_refused_with_a_sentence() -> None:
    with pytest.raises(FormError) as error:
        forms.concurrency(Form([("queue_timeout_ms", "500")]))
    assert error.value.problem.fields == {"concurrency.max_in_flight"}
    assert "requests in flight" in forms.problem_lines(error.value.problem)[0]


def test_an_in_flight_meter_reads_as_requests_in_flight() -> None:
    view = {"budget": None, "rate_limit": None,
            "concurrency": {"id": "c", "max_in_flight": 5, "queue_timeout_ms": 0, "in_flight": 3}}
    (meter,) = present.meters(view, 0)
    assert (meter.label, meter.text, meter.percent, meter.reset_at) == ("In flight", "3 of 5 requests in flight", 60.0, None)


def test_provider_configs_and_owner_from_the_form() -> None:
    form = Form([("owner", "team:search"), ("pc_provider", "anthropic"), ("pc_provider", "openai"),
                 ("pc1_enabled", "on"), ("pc1_weight", "2"), ("pc1_allowed_models", "gpt-4o, gpt-4o-mini")])
    assert forms.owner(form) == {"team_id": "search", "customer_id": None}
    assert forms.provider_configs(form) == [{"provider": "openai", "weight": "2",
                                             "allowed_models": ["gpt-4o", "gpt-4o-mini"], "allowed_keys": [],
                                             "budget": None, "rate_limit": None, "concurrency": None}]
    problem = ApiProblem(422, "x", [{"field": "provider_configs[0].budget.max_limit", "message": "bad"}])
    named = forms.name_configs(problem, [{"provider": "openai"}])
    assert forms.problem_lines(named) == ["provider configs openai › budget › amount (USD): bad"]


@pytest.mark.parametrize(("amount", "text"), [
    (0, "$0.00"), (12.5, "$12.50"), (1234.5, "$1,234.50"), (0.25, "$0.25"), (0.0000102, "$0.0000102"),
    (0.001, "$0.001"), (None, "—"),
])
def test_money_keeps_the_digits_small_amounts_need(amount: Any, text: str) -> None:
    assert present.money(amount) == text


def test_periods_spans_and_meters_read_as_words() -> None:
    assert [present.period(d) for d in ("1m", "15m", "1M", "2Y")] == ["minute", "15 minutes", "month", "2 years"]
    assert [present.span(s) for s in (42, 300, 3 * 3600 + 720, 2 * 86400 + 4 * 3600)] == \
        ["42 s", "5 min", "3 h 12 min", "2 d 4 h"]
    view = {"budget": {"current_usage": 8.5, "reserved": 0.5, "max_limit": 10, "reset_duration": "1d",
                       "reset_at": "1970-01-01T01:00:00Z"},
            "rate_limit": {"request_max_limit": 3, "request_reset_duration": "1m", "request_current_usage": 3,
                           "request_reserved": 0, "request_reset_at": "1970-01-01T00:01:00Z",
                           "token_max_limit": None, "token_reset_duration": None}}
    budget, requests = present.meters(view, now_ms=0)
    assert (budget.state, budget.percent, budget.reset_in) == ("warn", 90.0, "1 h")
    assert budget.text == "$8.50 (+$0.50 in flight) of $10.00 per day"
    assert (requests.state, requests.text) == ("full", "3 of 3 requests per minute")


def test_the_chart_escapes_its_labels_and_scales_to_a_round_top() -> None:
    svg = bar_chart([Bar("<b>", ((3, "spend"),), "a & b"), Bar("x", ((0, "spend"),), "zero")], str)
    assert "<b>" not in svg and "&lt;b&gt;" in svg and "a &amp; b" in svg
    assert ">4.0<" in svg and ">2.0<" in svg  # 3 rounds up to 4; the middle line is 2


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def test_the_client_turns_api_errors_into_problems_and_survives_a_crash() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        body = await receive()
        assert json.loads(body["body"]) == {"name": ""}
        error = {"error": {"type": "invalid_field", "message": "name: required", "field": "name",
                           "details": [{"field": "name", "message": "required"}]}}
        await send({"type": "http.response.start", "status": 422, "headers": []})
        await send({"type": "http.response.body", "body": json.dumps(error).encode()})
        raise RuntimeError("after the answer, as Starlette re-raises")

    with pytest.raises(ApiProblem) as problem:
        run(ManagementClient(app, "token").post("/api/x", {"name": ""}))
    assert (problem.value.status, problem.value.fields) == (422, {"name"})

    async def broken(scope: Any, receive: Any, send: Any) -> None:
        raise RuntimeError("before any answer")

    with pytest.raises(ApiProblem) as crashed:
        run(ManagementClient(broken, "token").get("/api/y"))
    assert crashed.value.status == 500 and "see the gateway's log" in crashed.value.message
    assert path("/api/governance/teams", "a/b c") == "/api/governance/teams/a%2Fb%20c"


def test_ui_http_rules(gateway: RunningGateway) -> None:
    with httpx2.Client(base_url=gateway.url, follow_redirects=False, timeout=10) as client:
        assert client.get("/uix").status_code == 404  # not the UI's
        redirect = client.get("/ui/teams?search=a")
        assert redirect.status_code == 303
        assert redirect.headers["location"] == "/ui/login?next=%2Fui%2Fteams%3Fsearch%3Da"
        login = client.get("/ui/login")
        assert "script-src 'self'" in login.headers["content-security-policy"]
        assert login.headers["x-frame-options"] == "DENY" and login.headers["cache-control"] == "no-store"
        foreign = client.post("/ui/login", data={"token": ADMIN_TOKEN}, headers={"origin": "https://evil.example"})
        assert foreign.status_code == 403 and "another site" in foreign.text
        logged_in = client.post("/ui/login", data={"token": ADMIN_TOKEN, "next": "https://evil.example/"})
        assert logged_in.status_code == 303 and logged_in.headers["location"] == "/ui/"
        assert client.get("/ui/static/ui.css").status_code == 200
        stale = client.post("/ui/teams", data={"name": "no form token"})
        assert stale.status_code == 403 and "out of date" in stale.text
