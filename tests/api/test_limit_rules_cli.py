"""`tollway limits` against a real gateway: create, list, show, values, delete."""

from __future__ import annotations

import json

import openai

from tests.api.support import unique
from tests.api.test_cli import gateway, tollway  # noqa: F401 - the CLI tests' fixtures
from tests.support.gateway import RunningGateway

HELLO = [{"role": "user", "content": "hi"}]


def test_a_rule_is_created_listed_and_its_values_shown(tollway, gateway: RunningGateway) -> None:  # noqa: F811
    team, rule = unique("team"), unique("rule")
    tollway("teams", "create", "--id", team, "--name", "Bot")
    created = tollway("limits", "create", "--name", rule, "--match", f"team={team}", "--match", "model=GPT-4o-mini",
                      "--per", "end-user", "--requests", "5", "--in-flight", "2")
    assert rule in created and f"model=GPT-4o-mini team={team}" in created and "end_user" in created
    key = json.loads(tollway("keys", "create", "--name", unique("bot"), "--team", team, "--json"))["virtual_key"]
    client = openai.OpenAI(base_url=gateway.v1, api_key=key["value"], max_retries=0)
    client.chat.completions.create(model="openai/gpt-4o-mini", messages=HELLO, user="zoe")
    gateway.call(gateway.runtime.flush_usage())

    assert rule in tollway("limits", "list", "--search", rule)
    shown = json.loads(tollway("limits", "show", rule, "--json"))["limit_rule"]
    assert shown["per"] == ["end_user"] and shown["concurrency"]["max_in_flight"] == 2
    values = tollway("limits", "values", rule)
    assert values.splitlines()[1].split() == ["zoe", "requests", "1", "5"]
    assert "--match" in tollway("limits", "create", "--name", "x", "--match", "region=eu", "--requests", "1", code=2)
    assert "does not exist" in tollway("limits", "create", "--name", unique("r"), "--match", "team=nobody",
                                       "--requests", "1", code=1)
    assert "deleted" in tollway("limits", "delete", rule, "--yes")
