"""Provider adapters: every provider type behind one registry, and no code outside the
adapters that branches on a provider type."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tollway.config import settings_from_dict
from tollway.providers.adapters import ADAPTERS, adapter_for
from tollway.providers.client import Api, ProviderClient
from tollway.providers.registry import provider_keys

_ROOT = Path(__file__).resolve().parents[2] / "tollway"
_TYPES = "|".join(sorted(ADAPTERS, key=len, reverse=True))
# A provider type compared as a string: `x.type == "azure"`, `"anthropic" != kind`,
# `type in ("openai", "azure")`, or a table keyed by type (`{"openai": ...}.get(type)`).
_TYPE_BRANCH = re.compile(
    rf"""\.type\s*(==|!=|\bin\b|\bnot in\b)"""
    rf"""|(==|!=)\s*["']({_TYPES})["']"""
    rf"""|["']({_TYPES})["']\s*(==|!=)"""
    rf"""|\bin\s*[(\[{{]\s*["']({_TYPES})["']"""
    rf"""|PRESETS\.get\("""
)
# Outside the adapters, these name a wire flavour or a provider *name*, never a type.
_ALLOWED = ("providers/adapters/", "testing/", "config/reference.py")


def _offending_lines() -> list[str]:
    found = []
    for path in sorted(_ROOT.rglob("*.py")):
        relative = path.relative_to(_ROOT).as_posix()
        if relative.startswith(_ALLOWED):
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if _TYPE_BRANCH.search(line.split("#", 1)[0]):
                found.append(f"tollway/{relative}:{number}: {line.strip()}")
    return found


def test_no_code_outside_the_adapters_branches_on_a_provider_type() -> None:
    assert _offending_lines() == [], "move the branch behind a ProviderAdapter method"


def test_the_grep_finds_a_provider_type_comparison(tmp_path: Path) -> None:
    for line in ('if provider.type == "azure":', 'x = "anthropic" == kind', 'if kind in ("openai", "azure"):',
                 "preset = PRESETS.get(settings.type)", "if self.type != 'gemini':"):
        assert _TYPE_BRANCH.search(line), line
    assert not _TYPE_BRANCH.search('settings_from_dict({"providers": {"openai": {"type": "openai"}}})')


def test_an_unknown_type_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="unknown provider type 'nope'"):
        adapter_for("nope")


def _client(provider: dict) -> ProviderClient:
    settings = settings_from_dict({"providers": {"p": {"keys": [{"value": "secret"}], **provider}}})
    return ProviderClient("p", settings.providers["p"], provider_keys(settings, "p"))


@pytest.mark.parametrize(("provider", "api", "stream", "url"), [
    ({"type": "openai"}, Api.CHAT, False, "https://api.openai.com/v1/chat/completions"),
    ({"type": "groq"}, Api.EMBEDDINGS, False, "https://api.groq.com/openai/v1/embeddings"),
    ({"type": "azure", "base_url": "https://r.openai.azure.com", "api_version": "2024-10-21"}, Api.CHAT, False,
     "https://r.openai.azure.com/openai/deployments/gemini-2.0-flash/chat/completions?api-version=2024-10-21"),
    ({"type": "azure", "base_url": "https://r.openai.azure.com", "api_version": "2024-10-21",
      "deployments": {"gemini-2.0-flash": "prod"}}, Api.CHAT, True,
     "https://r.openai.azure.com/openai/deployments/prod/chat/completions?api-version=2024-10-21"),
    ({"type": "anthropic", "base_url": "http://127.0.0.1:9/v1"}, Api.MESSAGES, True, "http://127.0.0.1:9/v1/messages"),
    ({"type": "gemini"}, Api.GENERATE_CONTENT, False,
     "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.0-flash:generateContent"),
    ({"type": "gemini", "base_url": "http://127.0.0.1:9/v1beta"}, Api.GENERATE_CONTENT, True,
     "http://127.0.0.1:9/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse"),
    ({"type": "gemini"}, Api.EMBED_CONTENT, False,
     "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.0-flash:embedContent"),
])
async def test_each_adapter_owns_its_urls(provider: dict, api: Api, stream: bool, url: str) -> None:
    client = _client(provider)
    try:
        assert client.url(api, "gemini-2.0-flash", stream) == url
    finally:
        await client.close()


async def test_a_client_chosen_gemini_model_cannot_leave_its_path_segment() -> None:
    client = _client({"type": "gemini", "base_url": "http://127.0.0.1:9"})
    try:
        url = client.url(Api.GENERATE_CONTENT, "../../v1/files?x=1#", False)
        assert url == "http://127.0.0.1:9/v1beta/models/..%2F..%2Fv1%2Ffiles%3Fx%3D1%23:generateContent"
    finally:
        await client.close()


@pytest.mark.parametrize(("provider", "header", "value"), [
    ({"type": "openai"}, "Authorization", "Bearer secret"),
    ({"type": "mistral"}, "Authorization", "Bearer secret"),
    ({"type": "azure", "base_url": "https://r.openai.azure.com", "api_version": "v"}, "api-key", "secret"),
    ({"type": "anthropic"}, "x-api-key", "secret"),
    ({"type": "gemini"}, "x-goog-api-key", "secret"),
])
async def test_each_adapter_authenticates_its_own_way(provider: dict, header: str, value: str) -> None:
    client = _client(provider)
    try:
        headers = client.headers(client.keys[0])
        assert headers[header] == value
        others = {"Authorization", "api-key", "x-api-key", "x-goog-api-key"} - {header}
        assert not others & set(headers)
    finally:
        await client.close()


@pytest.mark.parametrize(("provider_type", "client_api", "upstream"), [
    ("openai", Api.MESSAGES, Api.CHAT), ("openai", Api.CHAT, Api.CHAT),
    ("anthropic", Api.CHAT, Api.MESSAGES), ("anthropic", Api.COUNT_TOKENS, Api.COUNT_TOKENS),
    ("gemini", Api.CHAT, Api.GENERATE_CONTENT), ("gemini", Api.MESSAGES, Api.GENERATE_CONTENT),
    ("gemini", Api.GENERATE_CONTENT, Api.GENERATE_CONTENT), ("groq", Api.RESPONSES, Api.CHAT),
])
async def test_each_adapter_says_which_api_a_client_api_is_sent_as(provider_type: str, client_api: Api,
                                                                    upstream: Api) -> None:
    client = _client({"type": provider_type})
    try:
        assert client.upstream_api(client_api) is upstream
    finally:
        await client.close()


def test_model_lists_are_read_in_each_providers_shape() -> None:
    assert ADAPTERS["openai"].listed_models({"data": [{"id": "gpt-4o"}, {"no": "id"}]}) == ["gpt-4o"]
    assert ADAPTERS["gemini"].listed_models({"models": [{"name": "models/gemini-2.0-flash"}]}) == ["gemini-2.0-flash"]
    assert ADAPTERS["azure"].models_path is None
    assert ADAPTERS["anthropic"].models_path == "/v1/models"


def test_each_adapter_names_its_price_catalog_ids() -> None:
    assert ADAPTERS["azure"].price_catalog_ids == ("azure", "openai", None)
    assert ADAPTERS["gemini"].price_catalog_ids == ("google", None)
    assert ADAPTERS["xai"].price_catalog_ids == ("x-ai", None)
    assert ADAPTERS["ollama"].price_catalog_ids == (None,)
