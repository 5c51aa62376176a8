"""The admin CLI (`tollway keys|teams|customers|usage|explain`) against a real gateway."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from decimal import Decimal

import openai
import pytest
from typer.testing import CliRunner

from tests.api.support import ADMIN_TOKEN, MockThread, gateway_config, unique
from tests.support.gateway import RunningGateway, start_gateway
from tollway.cli import app

FILE_VK = "tw-cli-from-the-file-0123456789"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, upstream: MockThread) -> Iterator[RunningGateway]:
    governance = {"teams": [{"id": "file-team", "name": "From the file"}],
                  "virtual_keys": [{"id": "vk-from-file", "name": "file key", "value": FILE_VK, "team_id": "file-team"}]}
    running = start_gateway(gateway_config(f"sqlite:///{tmp_path_factory.mktemp('cli')}/tollway.db", upstream.url,
                                           governance=governance))
    yield running
    running.stop()


@pytest.fixture
def tollway(gateway: RunningGateway, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TOLLWAY_URL", gateway.url)
    monkeypatch.setenv("TOLLWAY_ADMIN_TOKEN", ADMIN_TOKEN)
    runner = CliRunner()

    def run(*args: str, code: int = 0) -> str:
        result = runner.invoke(app, list(args))
        assert result.exit_code == code, result.output
        return result.output

    return run


def test_team_and_key_created_by_the_cli_serve_the_next_request(tollway, gateway: RunningGateway) -> None:
    team = unique("team")
    assert team in tollway("teams", "create", "--id", team, "--name", "Search", "--budget", "5")
    created = json.loads(tollway("keys", "create", "--name", "cli key", "--team", team, "--requests", "2", "--json"))
    key = created["virtual_key"]
    assert key["value"].startswith("tw-") and key["team_id"] == team
    client = openai.OpenAI(base_url=gateway.v1, api_key=key["value"], max_retries=0)
    client.chat.completions.create(model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    shown = tollway("keys", "show", key["id"])
    assert "1/2 req per 1m" in shown and key["value"] not in shown  # usage visible, value never again
    assert key["id"] in tollway("keys", "list")


def test_block_denies_the_next_request_and_unblock_restores(tollway, gateway: RunningGateway) -> None:
    key = json.loads(tollway("keys", "create", "--name", "blockable", "--json"))["virtual_key"]
    client = openai.OpenAI(base_url=gateway.v1, api_key=key["value"], max_retries=0)
    tollway("keys", "block", key["id"])
    with pytest.raises(openai.PermissionDeniedError) as caught:
        client.chat.completions.create(model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.body["type"] == "virtual_key_blocked"
    tollway("keys", "unblock", key["id"])
    client.chat.completions.create(model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])


def test_explain_usage_and_delete(tollway) -> None:
    key = json.loads(tollway("keys", "create", "--name", "explained", "--requests", "5", "--json"))["virtual_key"]
    explained = tollway("explain", "--model", "openai/gpt-4o-mini", "--key-id", key["id"])
    assert "decision: allow" in explained and "virtual_key" in explained
    assert "explained" in tollway("usage")
    assert "deleted" in tollway("keys", "delete", key["id"], "--yes").lower()
    assert "404" in tollway("keys", "show", key["id"], code=1)


def test_errors_are_reported_with_their_status(tollway, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOLLWAY_ADMIN_TOKEN", "tw-a-virtual-key-is-not-an-admin-token")
    assert "403" in tollway("keys", "list", code=1)
    monkeypatch.setenv("TOLLWAY_ADMIN_TOKEN", ADMIN_TOKEN)
    output = tollway("teams", "create", "--name", "Bad", "--budget", "-3", code=1)
    assert "422" in output and "--budget:" in output and "max_limit" not in output  # the CLI's flag, not the JSON field
    output = tollway("keys", "create", "--name", "Bad", "--requests", "0", "--budget", "5", "--budget-period", "1x", code=1)
    assert "--requests:" in output and "--budget-period:" in output, output
    assert "rate_limit" not in output and "reset_duration" not in output
    assert "(none)" in tollway("keys", "list", "--search", "Bad")  # nothing partially written


def test_the_cli_shows_who_manages_each_entity_and_passes_on_the_refusal(tollway) -> None:
    listed = tollway("keys", "list")
    header = listed.splitlines()[0]
    assert header.rstrip().endswith("MANAGED BY")
    [row] = [line for line in listed.splitlines() if line.startswith("vk-from-file")]
    assert row.rstrip().endswith("config")
    made = json.loads(tollway("keys", "create", "--name", "made here", "--json"))["virtual_key"]
    assert made["managed_by"] == "api"
    assert tollway("keys", "show", made["id"]).splitlines()[1].rstrip().endswith("api")

    for command in (("keys", "block", "vk-from-file"), ("keys", "delete", "vk-from-file", "--yes"),
                    ("teams", "delete", "file-team", "--yes", "--cascade")):
        refused = tollway(*command, code=1)
        assert "error (409)" in refused and "is managed by the config file" in refused, refused
    assert "yes" in tollway("keys", "show", "vk-from-file").splitlines()[1]  # still active, still there


def test_entities_are_named_by_id_or_by_name(tollway) -> None:
    customer, team = unique("Acme"), unique("Search")
    created = json.loads(tollway("customers", "create", "--id", customer.lower(), "--name", customer, "--json"))
    assert created["customer"]["id"] == customer.lower()
    made_team = json.loads(tollway("teams", "create", "--name", team, "--customer", customer, "--json"))["team"]
    assert made_team["customer_id"] == customer.lower()  # --customer by name
    key_name = unique("named key")
    key = json.loads(tollway("keys", "create", "--id", key_name.replace(" ", "-"), "--name", key_name,
                             "--team", team, "--json"))["virtual_key"]
    assert key["id"] == key_name.replace(" ", "-") and key["team_id"] == made_team["id"]
    assert key["id"] in tollway("keys", "show", key_name)
    assert "no" in tollway("keys", "block", key_name).splitlines()[1]
    assert "deleted" in tollway("keys", "delete", key_name, "--yes").lower()
    missing = tollway("keys", "show", key_name, code=1)
    assert "404" in missing and f"no virtual key has the id or name {key_name!r}" in missing
    assert "no team has the id or name 'nobody'" in tollway("keys", "create", "--name", "x", "--team", "nobody", code=1)


def test_an_ambiguous_name_is_an_error_listing_the_matches(tollway) -> None:
    twin = unique("twin")
    first = json.loads(tollway("keys", "create", "--name", twin, "--json"))["virtual_key"]["id"]
    second = json.loads(tollway("keys", "create", "--name", twin, "--json"))["virtual_key"]["id"]
    refused = tollway("keys", "delete", twin, "--yes", code=1)
    assert f"2 virtual keys are named {twin!r}" in refused and first in refused and second in refused
    assert first in tollway("keys", "show", first)  # the id still works
    assert "yes" in tollway("keys", "show", second).splitlines()[1]  # and nothing was deleted


def test_money_is_printed_as_plain_decimals(tollway) -> None:
    shown = tollway("teams", "create", "--name", unique("rich"), "--budget", "1000000")
    assert "$0.00/$1000000.00 per 1M" in shown and "e+" not in shown
    shown = tollway("teams", "create", "--name", unique("thrifty"), "--budget", "0.3")
    assert "$0.00/$0.30 per 1M" in shown


def test_explain_exits_3_when_the_request_would_be_denied(tollway) -> None:
    name = unique("explain me")
    tollway("keys", "create", "--name", name)
    allowed = tollway("explain", "--model", "openai/gpt-4o-mini", "--key-id", name)
    assert "decision: allow" in allowed and "e-0" not in allowed
    tollway("keys", "block", name)
    denied = tollway("explain", "--model", "openai/gpt-4o-mini", "--key-id", name, code=3)
    assert "decision: virtual_key_blocked" in denied and "why:" in denied
    assert json.loads(tollway("explain", "--model", "openai/gpt-4o-mini", "--key-id", name, "--json",
                              code=3))["allowed"] is False


def test_spend_groups_by_key_with_names_in_table_csv_and_json(tollway, gateway: RunningGateway) -> None:
    names = [unique("spender"), unique("spender")]
    keys = [json.loads(tollway("keys", "create", "--name", name, "--json"))["virtual_key"] for name in names]
    for count, key in zip((2, 1), keys, strict=True):
        client = openai.OpenAI(base_url=gateway.v1, api_key=key["value"], max_retries=0)
        for _ in range(count):
            client.chat.completions.create(model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    tollway("keys", "delete", names[1], "--yes")

    rows = {row["key"]: row for row in csv.DictReader(io.StringIO(tollway("spend", "--by", "key", "--format", "csv")))}
    assert rows[keys[0]["id"]]["name"] == names[0] and rows[keys[0]["id"]]["requests"] == "2"
    assert rows[keys[1]["id"]]["name"] == "(deleted)" and rows[keys[1]["id"]]["requests"] == "1"
    spend = rows[keys[0]["id"]]["spend_usd"]
    assert "e" not in spend.lower() and Decimal(spend) > 0 and len(spend.split(".")[1]) >= 2

    report = json.loads(tollway("spend", "--by", "key", "--key", names[0], "--json"))
    [row] = report["series"]
    assert row["group"] == keys[0]["id"] and row["name"] == names[0] and report["total"]["requests"] == 2

    by_model = tollway("spend", "--by", "model", "--model", "openai/gpt-4o-mini", "--interval", "day")
    assert by_model.splitlines()[0].split()[:3] == ["MODEL", "DAY", "SPEND"] and "gpt-4o-mini" in by_model
    assert "total" in by_model.splitlines()[-1]
    assert "(none)" in tollway("spend", "--by", "model", "--model", "openai/no-such-model")
    bad = tollway("spend", "--start", "2026-01-02", "--end", "2026-01-01", code=1)
    assert "--start" in bad


def _chat(gateway: RunningGateway, value: str) -> None:
    client = openai.OpenAI(base_url=gateway.v1, api_key=value, max_retries=0)
    client.chat.completions.create(model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])


def test_rotate_prints_the_new_value_once_and_the_old_one_works_for_the_grace(tollway, gateway: RunningGateway) -> None:
    key = json.loads(tollway("keys", "create", "--name", unique("rotated"), "--expires-at", "2099-01-01T00:00:00Z",
                             "--json"))["virtual_key"]
    assert key["expires_at"] == "2099-01-01T00:00:00Z"
    assert "2099-01-01T00:00:00Z" in tollway("keys", "show", key["id"])
    out = tollway("keys", "rotate", key["id"], "--grace", "1h", "--yes")
    new = out.split("new value: ")[1].strip()
    assert new.startswith("tw-") and "works until" in out
    _chat(gateway, new)
    _chat(gateway, key["value"])
    assert new not in tollway("keys", "show", key["id"])  # shown once
    tollway("keys", "rotate", key["id"], "--yes")  # no grace: the current value stops at once
    with pytest.raises(openai.AuthenticationError):
        _chat(gateway, new)
    assert "grace_period" in tollway("keys", "rotate", key["id"], "--grace", "1M", "--yes", code=1)


def test_expire_now_refuses_the_next_request_and_never_restores(tollway, gateway: RunningGateway) -> None:
    key = json.loads(tollway("keys", "create", "--name", unique("expiring"), "--json"))["virtual_key"]
    tollway("keys", "expire", key["id"], "--at", "now")
    with pytest.raises(openai.AuthenticationError) as caught:
        _chat(gateway, key["value"])
    assert caught.value.body["type"] == "virtual_key_expired"
    tollway("keys", "expire", key["id"], "--never")
    _chat(gateway, key["value"])
    tollway("keys", "expire", key["id"], code=2)  # neither --at nor --never
    assert "file key" in tollway("keys", "show", "vk-from-file")
    assert "managed" in tollway("keys", "rotate", "vk-from-file", "--yes", code=1).lower()


def test_explain_prices_a_body_file_and_shows_strict_limits(tollway, api, tmp_path) -> None:
    key = api.post("/api/governance/virtual-keys", json={"id": unique("vk"), "name": unique("strict"), "rate_limit": {
        "token_max_limit": 1_000, "token_reset_duration": "1d", "enforcement": "strict", "on_insufficient": "clamp"}})
    assert key.status_code == 201, key.text
    body = tmp_path / "request.json"
    body.write_text(json.dumps({"model": "openai/gpt-4o-mini", "n": 2, "max_tokens": 2_000,
                                "messages": [{"role": "user", "content": "Say hello"}]}))

    shown = tollway("explain", "--key-id", key.json()["virtual_key"]["id"], "--body", str(body))
    answer = json.loads(tollway("explain", "--key-id", key.json()["virtual_key"]["id"], "--body", str(body), "--json"))

    assert "decision: allow" in shown and "strict/clamp" in shown
    assert f"worst case: {answer['worst_case_tokens']} tokens" in shown and "(max_tokens 2000)" in shown
    assert f"clamped: forwarded with max_tokens {answer['clamped_max_tokens']}" in shown
    assert answer["worst_case_tokens"] > 4_000 and 0 < answer["clamped_max_tokens"] < 500  # two generations share 1,000
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert "--body" in tollway("explain", "--key-id", key.json()["virtual_key"]["id"], "--body", str(bad), code=2)


def test_a_key_created_with_tags_reports_spend_by_tag(tollway, gateway: RunningGateway) -> None:
    tag = unique("feature").lower()
    key = json.loads(tollway("keys", "create", "--name", unique("tagged"), "--allowed-tags", f"{tag},other",
                             "--forced-tags", "CC:7", "--json"))["virtual_key"]
    assert (key["allowed_tags"], key["forced_tags"]) == ([tag, "other"], ["cc:7"])
    client = openai.OpenAI(base_url=gateway.v1, api_key=key["value"], max_retries=0,
                           default_headers={"x-tollway-tags": tag.upper()})
    client.chat.completions.create(model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    rows = {row["tag"]: row for row in csv.DictReader(io.StringIO(
        tollway("spend", "--by", "tag", "--key", key["id"], "--format", "csv")))}
    assert set(rows) == {tag, "cc:7"} and rows[tag]["requests"] == "1"
    only = json.loads(tollway("spend", "--tag", "cc:7", "--json"))
    assert only["total"]["requests"] >= 1
    refused = tollway("keys", "create", "--name", "bad tags", "--forced-tags", "a;b", code=1)
    assert "--forced-tags" in refused


def test_tag_limits_are_listed_created_and_deleted_by_the_cli(tollway, gateway: RunningGateway) -> None:
    tag = unique("Team-Feature")
    created = json.loads(tollway("tags", "create", "--name", tag, "--requests", "1", "--json"))["tag"]
    assert created["name"] == tag.lower() and created["rate_limit"]["request_max_limit"] == 1
    assert tag.lower() in tollway("tags", "list")
    client = openai.OpenAI(base_url=gateway.v1, api_key=FILE_VK, max_retries=0, default_headers={"x-tollway-tags": tag})
    client.chat.completions.create(model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    assert "1/1 req" in tollway("tags", "show", tag.lower())
    tollway("tags", "delete", tag.lower(), "--yes")
    client.chat.completions.create(model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
