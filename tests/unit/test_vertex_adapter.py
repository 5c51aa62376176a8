"""The Vertex AI adapter: URLs per region and publisher, which publisher a model goes to,
the body tweaks, the exchanges chosen per model, and the configuration's checks."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from tollway.config import ConfigError, settings_from_dict
from tollway.config.schema import ProviderSettings
from tollway.providers.adapters import adapter_for
from tollway.providers.adapters.vertex import VERTEX_ANTHROPIC_VERSION, host_of, publisher_of
from tollway.providers.apis import Api
from tollway.providers.client import ProviderClient
from tollway.providers.registry import provider_keys
from tollway.proxy.exchange_choice import exchange_for
from tollway.proxy.gemini_exchanges import CHAT_VIA_GEMINI, EmbeddingsViaGemini
from tollway.proxy.request import parse_request
from tollway.proxy.translated import ChatViaMessages
from tollway.proxy.vertex_exchanges import AdaptedBody, EmbeddingsViaVertexPredict

pytest.importorskip("google.auth", reason="google-auth is the vertex extra (in the test extra)")

VERTEX = adapter_for("vertex")


@pytest.fixture(scope="module")
def key_json() -> str:
    from tollway.testing.mock_vertex import new_service_account

    return json.dumps(new_service_account("https://oauth2.googleapis.com/token", project="json-project")[0])


def settings(**fields: Any) -> ProviderSettings:
    return settings_from_dict({"providers": {"v": {"type": "vertex", "project": "proj", **fields}}}).providers["v"]


def url(api: Api, model: str, stream: bool = False, **fields: Any) -> str:
    provider = settings(**fields)
    return VERTEX.url(VERTEX.base_url(provider), provider, api, model, stream)


# --- URLs -------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("region", "host"), [
    ("us-east5", "https://us-east5-aiplatform.googleapis.com"), ("global", "https://aiplatform.googleapis.com"),
    ("us", "https://aiplatform.us.rep.googleapis.com"), ("eu", "https://aiplatform.eu.rep.googleapis.com")])
def test_each_region_has_its_endpoint(region: str, host: str) -> None:
    assert host_of(region) == host
    assert url(Api.GENERATE_CONTENT, "gemini-2.5-flash", region=region) == (
        f"{host}/v1/projects/proj/locations/{region}/publishers/google/models/gemini-2.5-flash:generateContent")


def test_the_default_region_is_global() -> None:
    assert url(Api.GENERATE_CONTENT, "gemini-2.5-flash").startswith(
        "https://aiplatform.googleapis.com/v1/projects/proj/locations/global/")


@pytest.mark.parametrize(("api", "model", "stream", "tail"), [
    (Api.GENERATE_CONTENT, "gemini-2.5-flash", True, "google/models/gemini-2.5-flash:streamGenerateContent?alt=sse"),
    (Api.GEMINI_COUNT_TOKENS, "gemini-2.5-flash", False, "google/models/gemini-2.5-flash:countTokens"),
    (Api.EMBED_CONTENT, "gemini-embedding-001", False, "google/models/gemini-embedding-001:embedContent"),
    (Api.VERTEX_PREDICT, "text-embedding-005", False, "google/models/text-embedding-005:predict"),
    (Api.MESSAGES, "claude-sonnet-4-5@20250929", False, "anthropic/models/claude-sonnet-4-5@20250929:rawPredict"),
    (Api.MESSAGES, "claude-sonnet-4-5@20250929", True,
     "anthropic/models/claude-sonnet-4-5@20250929:streamRawPredict"),
    (Api.COUNT_TOKENS, "claude-sonnet-4-5@20250929", False, "anthropic/models/count-tokens:rawPredict"),
])
def test_each_api_has_its_path(api: Api, model: str, stream: bool, tail: str) -> None:
    assert url(api, model, stream, region="us-east5") == (
        f"https://us-east5-aiplatform.googleapis.com/v1/projects/proj/locations/us-east5/publishers/{tail}")


def test_a_base_url_points_every_path_at_it_and_tolerates_a_v1_suffix() -> None:
    for base in ("http://127.0.0.1:9/", "http://127.0.0.1:9/v1"):
        assert url(Api.MESSAGES, "claude-x", base_url=base, region="us-east5") == (
            "http://127.0.0.1:9/v1/projects/proj/locations/us-east5/publishers/anthropic/models/claude-x:rawPredict")


@pytest.mark.parametrize("model", ["../../../other-project/x", "a/b:delete?x=1", "m#frag", "claude-x/../../y"])
def test_a_client_chosen_model_cannot_leave_its_path_segment(model: str) -> None:
    built = url(Api.MESSAGES if model.startswith("claude") else Api.GENERATE_CONTENT, model, region="us-east5")
    path = built.removeprefix("https://us-east5-aiplatform.googleapis.com")
    assert path.startswith("/v1/projects/proj/locations/us-east5/publishers/")
    segment = path.split("/models/", 1)[1]
    assert "/" not in segment and "?" not in segment.split(":")[0] and "#" not in segment


# --- publishers and exchanges -------------------------------------------------------------------------

def test_the_publisher_comes_from_the_name_unless_configured() -> None:
    plain = settings()
    assert publisher_of(plain, "claude-opus-4-1@20250805") == "anthropic"
    assert publisher_of(plain, "gemini-2.5-pro") == "google"
    assert publisher_of(plain, "text-embedding-005") == "google"
    configured = settings(publishers={"tuned-claude": "anthropic", "claude-lookalike": "google"})
    assert publisher_of(configured, "tuned-claude") == "anthropic"
    assert publisher_of(configured, "claude-lookalike") == "google"


@pytest.mark.parametrize(("api", "model", "upstream"), [
    (Api.CHAT, "gemini-2.5-flash", Api.GENERATE_CONTENT), (Api.CHAT, "claude-x", Api.MESSAGES),
    (Api.MESSAGES, "gemini-2.5-flash", Api.GENERATE_CONTENT), (Api.MESSAGES, "claude-x", Api.MESSAGES),
    (Api.RESPONSES, "claude-x", Api.MESSAGES), (Api.RESPONSES, "gemini-2.5-flash", Api.GENERATE_CONTENT),
    (Api.COUNT_TOKENS, "claude-x", Api.COUNT_TOKENS), (Api.COUNT_TOKENS, "gemini-2.5-flash", Api.GENERATE_CONTENT),
    (Api.EMBEDDINGS, "text-embedding-005", Api.VERTEX_PREDICT),
    (Api.EMBEDDINGS, "gemini-embedding-001", Api.GENERATE_CONTENT),
    (Api.GENERATE_CONTENT, "gemini-2.5-flash", Api.GENERATE_CONTENT),
])
def test_the_provider_api_depends_on_the_model(api: Api, model: str, upstream: Api) -> None:
    assert VERTEX.upstream_api(settings(), api, model) is upstream


async def test_exchanges_are_chosen_per_model_and_kept_per_pair() -> None:
    provider = ProviderClient("v", settings(), provider_keys(
        settings_from_dict({"providers": {"v": {"type": "vertex", "project": "proj"}}}), "v"))
    try:
        gemini, claude = exchange_for(Api.CHAT, provider, "gemini-2.5-flash"), exchange_for(Api.CHAT, provider, "claude-x")
        assert isinstance(gemini, AdaptedBody) and gemini.inner is CHAT_VIA_GEMINI
        assert isinstance(claude, AdaptedBody) and isinstance(claude.inner, ChatViaMessages)
        assert exchange_for(Api.CHAT, provider, "gemini-2.0-flash") is gemini  # one per (API, provider API)
        embed = exchange_for(Api.EMBEDDINGS, provider, "text-embedding-005")
        assert isinstance(embed, AdaptedBody) and isinstance(embed.inner, EmbeddingsViaVertexPredict)
        assert isinstance(exchange_for(Api.EMBEDDINGS, provider, "gemini-embedding-001").inner, EmbeddingsViaGemini)
        with pytest.raises(Exception, match="does not serve the embeddings API"):
            exchange_for(Api.EMBEDDINGS, provider, "claude-x")
    finally:
        await provider.close()


# --- body tweaks ------------------------------------------------------------------------------------

def test_a_claude_body_names_no_model_and_says_vertexs_version() -> None:
    body = {"model": "claude-x", "max_tokens": 5, "messages": [], "stream": True}
    tweaked = VERTEX.tweak_body(settings(), Api.MESSAGES, "claude-x", dict(body))
    assert tweaked == {"max_tokens": 5, "messages": [], "stream": True, "anthropic_version": VERTEX_ANTHROPIC_VERSION}


def test_claudes_token_counter_is_told_the_model() -> None:
    tweaked = VERTEX.tweak_body(settings(), Api.COUNT_TOKENS, "claude-x@1", {"model": "alias", "messages": []})
    assert tweaked == {"model": "claude-x@1", "messages": [], "anthropic_version": VERTEX_ANTHROPIC_VERSION}


def test_geminis_count_tokens_takes_the_request_at_the_top_level() -> None:
    body = {"generateContentRequest": {"model": "models/gemini-2.5-flash", "contents": [{"parts": [{"text": "x"}]}],
                                       "systemInstruction": {"parts": [{"text": "y"}]}}}
    assert VERTEX.tweak_body(settings(), Api.GEMINI_COUNT_TOKENS, "gemini-2.5-flash", body) == {
        "contents": [{"parts": [{"text": "x"}]}], "systemInstruction": {"parts": [{"text": "y"}]}}


def test_the_tweak_leaves_the_clients_body_alone_for_a_fallback() -> None:
    provider = ProviderClient.__new__(ProviderClient)
    provider.adapter, provider.settings = VERTEX, settings()
    request = parse_request(Api.MESSAGES, json.dumps({"model": "vertex/claude-x", "max_tokens": 3,
                                                      "messages": [{"role": "user", "content": "hi"}]}).encode())
    exchange = AdaptedBody(_passthrough(), provider)
    sent = exchange.upstream_body(request, "claude-x")
    assert "model" not in sent and sent["anthropic_version"] == VERTEX_ANTHROPIC_VERSION
    assert request.body["model"] == "vertex/claude-x"


def _passthrough() -> Any:
    from tollway.proxy.passthrough import AnthropicPassthrough

    return AnthropicPassthrough()


# --- configuration -------------------------------------------------------------------------------------

def _problems(provider: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as caught:
        settings_from_dict({"providers": {"v": {"type": "vertex", **provider}}})
    return str(caught.value)


def test_a_vertex_provider_needs_a_project(key_json: str) -> None:
    assert "needs project" in _problems({})
    no_project = json.dumps({k: v for k, v in json.loads(key_json).items() if k != "project_id"})
    assert "needs project" in _problems({"credentials": no_project})


def test_the_project_defaults_to_the_credentials_project_id(key_json: str) -> None:
    provider = settings_from_dict({"providers": {"v": {"type": "vertex", "credentials": key_json}}}).providers["v"]
    assert "/projects/json-project/" in VERTEX.base_url(provider)


def test_credentials_may_be_a_file(key_json: str, tmp_path: Path) -> None:
    path = tmp_path / "key.json"
    path.write_text(key_json)
    provider = settings_from_dict({"providers": {"v": {"type": "vertex", "credentials": str(path)}}}).providers["v"]
    assert "/projects/json-project/" in VERTEX.base_url(provider)


@pytest.mark.parametrize(("credentials", "problem"), [
    ("/nonexistent/key.json", "cannot read '/nonexistent/key.json'"),
    ("{not json", "is not valid JSON"),
    ('{"type": "service_account", "client_email": "x@y", "token_uri": "https://t"}', "not usable Google credentials"),
    ('{"type": "unknown_kind"}', "not usable Google credentials"),
])
def test_unusable_credentials_are_refused_at_start_naming_the_field(credentials: str, problem: str) -> None:
    message = _problems({"project": "p", "credentials": credentials})
    assert "providers.v" in message and problem in message


def test_the_credentials_never_show_in_a_repr(key_json: str) -> None:
    provider = settings_from_dict({"providers": {"v": {"type": "vertex", "credentials": key_json}}}).providers["v"]
    assert "PRIVATE KEY" not in repr(provider)


@pytest.mark.parametrize("region", ["us-east5.evil.com", "US", "us east", "x/y"])
def test_a_region_that_is_no_region_is_refused(region: str) -> None:
    assert "region" in _problems({"project": "p", "region": region})


def test_without_google_auth_the_error_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "google.auth", None)
    assert "pip install 'tollway[vertex]'" in _problems({"project": "p"})


def test_vertex_serves_no_responses_api_of_its_own() -> None:
    assert "responses_api" in _problems({"project": "p", "responses_api": True})


def test_prices_are_looked_up_under_googles_catalog_id() -> None:
    from tollway.pricing import PriceCatalog

    catalog = PriceCatalog()
    for model in ("gemini-2.5-flash", "claude-sonnet-4-5@20250929", "gemini-embedding-001"):
        assert catalog.price_for("vertex", "vertex", model) is not None, model
