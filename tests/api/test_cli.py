"""The admin CLI (`tollway keys|teams|customers|usage|explain`) against a real gateway."""

from __future__ import annotations

import json
from collections.abc import Iterator

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
    assert "422" in output and "max_limit" in output


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
