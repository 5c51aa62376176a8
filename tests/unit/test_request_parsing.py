"""Client requests: what is accepted, and the 4xx message for what is not."""

from __future__ import annotations

import orjson
import pytest

from tollway.config.schema import EstimateConfig
from tollway.errors import GatewayError
from tollway.governance.model import Governed, Level, ProviderConfigPolicy, Scope, VirtualKeyPolicy
from tollway.providers.client import Api
from tollway.proxy.auth import presented_key
from tollway.proxy.estimate import estimate_tokens
from tollway.proxy.request import parse_request
from tollway.proxy.targets import Target, TargetResolver

CHAT = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


@pytest.mark.parametrize(
    ("api", "raw", "status", "message"),
    [
        (Api.CHAT, b"{not json", 400, "not valid JSON"),
        (Api.CHAT, b"[1, 2]", 400, "must be a JSON object"),
        (Api.CHAT, orjson.dumps({"messages": []}), 400, "missing required field 'model'"),
        (Api.CHAT, orjson.dumps({"model": 3, "messages": []}), 400, "'model' must be a non-empty string"),
        (Api.CHAT, orjson.dumps({"model": "a/b"}), 400, "missing required field 'messages'"),
        (Api.CHAT, orjson.dumps({"model": "a/b", "messages": "hi"}), 400, "'messages' must be a non-empty array"),
        (Api.CHAT, orjson.dumps({"model": "a/b", "messages": [1]}), 400, "messages[0] must be an object"),
        (Api.CHAT, orjson.dumps({**CHAT, "stream": "yes"}), 400, "'stream' must be true or false"),
        (Api.CHAT, orjson.dumps({**CHAT, "max_tokens": -5}), 400, "'max_tokens' must be an integer from 1 to 1000000000"),
        (Api.CHAT, orjson.dumps({**CHAT, "max_tokens": True}), 400, "'max_tokens' must be an integer from 1 to 1000000000"),
        (Api.CHAT, b'{"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": 18446744073709551615}',
         400, "'max_tokens' must be an integer from 1 to 1000000000"),
        (Api.EMBEDDINGS, orjson.dumps({"model": "a/b"}), 400, "missing required field 'input'"),
        (Api.MESSAGES, orjson.dumps(CHAT), 400, "missing required field 'max_tokens'"),
    ],
)
def test_bad_requests_are_explained(api: Api, raw: bytes, status: int, message: str) -> None:
    with pytest.raises(GatewayError) as caught:
        parse_request(api, raw)
    assert caught.value.status == status
    assert message in caught.value.message


def test_good_request_is_parsed() -> None:
    request = parse_request(Api.CHAT, orjson.dumps({**CHAT, "stream": True, "max_tokens": 50,
                                                    "stream_options": {"include_usage": True}}))
    assert (request.model, request.stream, request.wants_usage, request.max_tokens) == ("openai/gpt-4o-mini", True, True, 50)


def test_estimate_uses_body_size_and_max_tokens() -> None:
    raw = orjson.dumps({**CHAT, "max_tokens": 77})
    config = EstimateConfig(default_completion_tokens=300, bytes_per_prompt_token=4)
    assert estimate_tokens(parse_request(Api.CHAT, raw), config) == (len(raw) // 4, 77)
    assert estimate_tokens(parse_request(Api.CHAT, orjson.dumps(CHAT)), config)[1] == 300


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ([(b"authorization", b"Bearer tw-abc")], "tw-abc"),
        ([(b"authorization", b"Bearer sk-placeholder")], None),
        ([(b"x-api-key", b"tw-anthropic-client")], "tw-anthropic-client"),
        ([(b"x-api-key", b"unused")], None),
        ([(b"authorization", b"Bearer tw-bearer"), (b"x-tollway-vk", b"tw-explicit")], "tw-explicit"),
        ([(b"x-bf-vk", b"tw-from-bifrost")], "tw-from-bifrost"),
        ([], None),
    ],
)
def test_presented_key(headers, expected) -> None:
    assert presented_key({"headers": headers}) == expected


def _key(*providers: str) -> VirtualKeyPolicy:
    scope = Scope(Level.VIRTUAL_KEY, "k", "k")
    configs = {p: ProviderConfigPolicy(p, 1.0, frozenset(), frozenset(), Governed(Scope(Level.PROVIDER_CONFIG, p, p)))
               for p in providers}
    return VirtualKeyPolicy("k", "k", True, None, None, frozenset(), configs, Governed(scope))


def test_targets_resolve_prefix_alias_fallbacks_and_key_routes() -> None:
    resolver = TargetResolver(["openai", "anthropic"], {"fast": "openai/gpt-4o-mini"}, {"fast": ["anthropic/claude"]})
    assert resolver.resolve("openai/gpt-4o", None) == [Target("openai", "gpt-4o")]
    assert resolver.resolve("fast", None) == [Target("openai", "gpt-4o-mini"), Target("anthropic", "claude")]
    assert resolver.resolve("claude-x", _key("anthropic")) == [Target("anthropic", "claude-x")]
    with pytest.raises(GatewayError, match="unknown provider 'nope'") as caught:
        resolver.resolve("nope/model", None)
    assert caught.value.status == 404
    with pytest.raises(GatewayError, match="address models as 'provider/model'"):
        resolver.resolve("gpt-4o", None)
