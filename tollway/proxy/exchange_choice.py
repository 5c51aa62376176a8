"""Choosing the exchange for a client API and a provider."""

from __future__ import annotations

from tollway.errors import bad_request
from tollway.providers.client import Api, ProviderClient
from tollway.proxy.passthrough import AnthropicPassthrough, Exchange, OpenAIPassthrough
from tollway.proxy.responses_exchanges import responses_exchange
from tollway.proxy.token_count import CountTokensPassthrough, EstimatedTokenCount
from tollway.proxy.translated import ChatViaMessages, MessagesViaChat

# Exchanges hold no per-request state, so one of each serves every request.
_OPENAI_PROVIDER: dict[Api, Exchange] = {
    Api.CHAT: OpenAIPassthrough(Api.CHAT),
    Api.COMPLETIONS: OpenAIPassthrough(Api.COMPLETIONS),
    Api.EMBEDDINGS: OpenAIPassthrough(Api.EMBEDDINGS),
    Api.MESSAGES: MessagesViaChat(),
    Api.COUNT_TOKENS: EstimatedTokenCount(),
}
_ANTHROPIC_PROVIDER: dict[Api, Exchange] = {Api.CHAT: ChatViaMessages(), Api.MESSAGES: AnthropicPassthrough(),
                                            Api.COUNT_TOKENS: CountTokensPassthrough()}


def exchange_for(api: Api, provider: ProviderClient) -> Exchange:
    if api is Api.RESPONSES or api is Api.RESPONSES_INPUT_TOKENS:  # per provider: by its type and settings
        return responses_exchange(provider, api)
    table = _ANTHROPIC_PROVIDER if provider.type == "anthropic" else _OPENAI_PROVIDER
    exchange = table.get(api)
    if exchange is None:
        raise bad_request(f"provider {provider.name!r} ({provider.type}) does not serve the {api.value} API")
    return exchange
