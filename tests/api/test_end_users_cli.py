"""`tollway end-users` and `tollway spend --by end-user` against a real gateway."""

from __future__ import annotations

import json

import openai

from tests.api.support import admin, unique
from tests.api.test_cli import gateway, tollway  # noqa: F401 - the CLI tests' fixtures
from tests.support.gateway import RunningGateway

HELLO = [{"role": "user", "content": "hi"}]


def test_end_users_are_listed_overridden_and_reported(tollway, gateway: RunningGateway) -> None:  # noqa: F811
    team = unique("team")
    tollway("teams", "create", "--id", team, "--name", "Bot")
    with_template = {"end_user_limits": {"rate_limit": {"request_max_limit": 1, "request_reset_duration": "1m"}}}
    with admin(gateway) as api:
        assert api.patch(f"/api/governance/teams/{team}", json=with_template).status_code == 200
    key = json.loads(tollway("keys", "create", "--name", unique("bot"), "--team", team, "--json"))["virtual_key"]
    client = openai.OpenAI(base_url=gateway.v1, api_key=key["value"], max_retries=0)
    client.chat.completions.create(model="openai/gpt-4o-mini", messages=HELLO, user="zoe")
    client.chat.completions.create(model="openai/gpt-4o-mini", messages=HELLO, user="yann")

    listed = tollway("end-users", "list", "--team", team, "--sort", "end_user")
    assert [line.split()[0] for line in listed.splitlines()[1:3]] == ["yann", "zoe"] and "2 end users" in listed
    assert "zoe" in tollway("end-users", "list", "--key", key["name"], "--search", "z")
    assert "yann" not in tollway("end-users", "list", "--team", team, "--search", "z")

    shown = tollway("end-users", "set", "zoe", "--team", team, "--requests", "3")
    assert "override: rate_limit" in shown and "requests" in shown
    client.chat.completions.create(model="openai/gpt-4o-mini", messages=HELLO, user="zoe")  # 2 of 3: allowed
    with_usage = json.loads(tollway("end-users", "show", "zoe", "--team", team, "--json"))
    assert [(lim["limit"], lim["used"]) for lim in with_usage["limits"]] == [(3, 2)]
    assert "removed" in tollway("end-users", "unset", "zoe", "--team", team)
    assert "exactly one of" in tollway("end-users", "show", "zoe", code=2)

    report = json.loads(tollway("spend", "--by", "end-user", "--team", team, "--json"))
    assert {row["group"]: row["requests"] for row in report["series"]} == {"zoe": 2, "yann": 1}
