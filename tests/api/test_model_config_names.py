"""Model configs whose names differ only in case, surrounding whitespace or Unicode
compatibility form are one model (requests are matched so: `tollway.governance.names`), so
a second one is refused with a 409 naming `model_name` and the config it collides with;
names no request could match are refused with a 422. Real server and SQLite; the official
openai SDK shows the stored config governs every spelling."""

from __future__ import annotations

from collections.abc import Iterator

import httpx2
import openai
import pytest

from tests.api.support import MockThread, gateway_config, unique
from tests.support.gateway import RunningGateway, start_gateway

MODELS = "/api/governance/model-configs"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, upstream: MockThread) -> Iterator[RunningGateway]:
    url = f"sqlite:///{tmp_path_factory.mktemp('model-names')}/tollway.db"
    running = start_gateway(gateway_config(url, upstream.url))
    yield running
    running.stop()


def _fullwidth(text: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


@pytest.mark.parametrize("spelling", [str.upper, lambda name: f"  {name}\t", _fullwidth, lambda name: name.title()])
def test_a_second_spelling_of_a_configured_model_is_a_409_naming_the_first(api: httpx2.Client, spelling) -> None:
    name = unique("gpt-test")
    first = api.post(MODELS, json={"model_name": name, "provider": "openai", "budget": {"max_limit": 1, "reset_duration": "1d"}})
    assert first.status_code == 201, first.text
    config_id = first.json()["model_config"]["id"]

    clash = api.post(MODELS, json={"model_name": spelling(name), "provider": "openai",
                                   "budget": {"max_limit": 100, "reset_duration": "1d"}})

    assert clash.status_code == 409, clash.text
    error = clash.json()["error"]
    assert error["field"] == "model_name" and config_id in error["message"]
    assert len(api.get(MODELS, params={"search": name}).json()["model_configs"]) == 1  # nothing written
    elsewhere = api.post(MODELS, json={"model_name": spelling(name), "provider": "anthropic"})
    assert elsewhere.status_code == 201  # another provider's config is another set of limits


def test_a_rename_onto_another_spelling_is_a_409(api: httpx2.Client) -> None:
    name = unique("gpt-rename")
    kept = api.post(MODELS, json={"model_name": name}).json()["model_config"]
    other = api.post(MODELS, json={"model_name": name + "-b"}).json()["model_config"]

    renamed = api.put(f"{MODELS}/{other['id']}", json={"model_name": name.upper()})
    itself = api.put(f"{MODELS}/{kept['id']}", json={"model_name": name.upper()})

    assert renamed.status_code == 409 and renamed.json()["error"]["field"] == "model_name"
    assert kept["id"] in renamed.json()["error"]["message"]
    assert api.get(f"{MODELS}/{other['id']}").json()["model_config"]["model_name"] == name + "-b"
    assert itself.status_code == 200 and itself.json()["model_config"]["model_name"] == name.upper()  # its own case


@pytest.mark.parametrize("name", ["gpt-4o\u200b", "gpt 4o", "gpt-4o\x07"])
def test_a_name_no_request_could_match_is_refused(api: httpx2.Client, name: str) -> None:
    response = api.post(MODELS, json={"model_name": name})
    assert response.status_code in (400, 422), response.text
    assert response.json()["error"]["field"] == "model_name"


def test_names_are_stored_canonical_and_govern_every_spelling(api: httpx2.Client, gateway: RunningGateway) -> None:
    created = api.post(MODELS, json={"model_name": " \uff47\uff50\uff54-4o-mini ", "provider": "openai",
                                     "rate_limit": {"request_max_limit": 1, "request_reset_duration": "1h"}})
    assert created.status_code == 201, created.text
    assert created.json()["model_config"]["model_name"] == "gpt-4o-mini"

    client = openai.OpenAI(base_url=gateway.v1, api_key="unused", max_retries=0)
    client.chat.completions.create(model="openai/GPT-4o-mini", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="openai/gpt-4o-MINI", messages=[{"role": "user", "content": "hi"}])
