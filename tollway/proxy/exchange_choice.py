"""Choosing the exchange for a client API and a provider.

A provider's adapter says which wire APIs it serves itself and which one it translates
every other client API through (`ProviderClient.upstream_api`); the exchange is then
found by the pair (client API, provider API). Where the two are the same the bytes pass
through; otherwise chat completions is the internal form: a client API reaches a
provider API through translators to and from chat (see `tollway.proxy.translated`).
"""

from __future__ import annotations

from tollway.errors import bad_request
from tollway.providers.client import Api, ProviderClient
from tollway.proxy.bedrock_exchanges import (
    CHAT_VIA_CONVERSE,
    MESSAGES_VIA_CONVERSE,
    ConversePassthrough,
    CountTokensViaCountTokens,
    EmbeddingsViaInvokeModel,
    responses_tokens_via_count_tokens,
)
from tollway.proxy.gemini_exchanges import (
    CHAT_VIA_GEMINI,
    MESSAGES_VIA_GEMINI,
    CountTokensViaGemini,
    EmbeddingsViaGemini,
    GeminiPassthrough,
)
from tollway.proxy.passthrough import AnthropicPassthrough, Exchange, LocalExchange, OpenAIPassthrough
from tollway.proxy.responses_exchanges import responses_exchange, translated_responses
from tollway.proxy.token_count import CountTokensPassthrough, EstimatedResponseTokens, EstimatedTokenCount
from tollway.proxy.translated import ChatViaMessages, MessagesViaChat
from tollway.proxy.vertex_exchanges import AdaptedBody, EmbeddingsViaVertexPredict

# Exchanges hold no per-request state, so one of each serves every request.
# (client API, provider API) -> exchange.
_EXCHANGES: dict[tuple[Api, Api], Exchange] = {
    (Api.CHAT, Api.CHAT): OpenAIPassthrough(Api.CHAT),
    (Api.COMPLETIONS, Api.COMPLETIONS): OpenAIPassthrough(Api.COMPLETIONS),
    (Api.EMBEDDINGS, Api.EMBEDDINGS): OpenAIPassthrough(Api.EMBEDDINGS),
    (Api.MESSAGES, Api.CHAT): MessagesViaChat(),
    (Api.COUNT_TOKENS, Api.CHAT): EstimatedTokenCount(),
    (Api.CHAT, Api.MESSAGES): ChatViaMessages(),
    (Api.MESSAGES, Api.MESSAGES): AnthropicPassthrough(),
    (Api.COUNT_TOKENS, Api.COUNT_TOKENS): CountTokensPassthrough(),
    (Api.CHAT, Api.GENERATE_CONTENT): CHAT_VIA_GEMINI,
    (Api.MESSAGES, Api.GENERATE_CONTENT): MESSAGES_VIA_GEMINI,
    (Api.COUNT_TOKENS, Api.GENERATE_CONTENT): CountTokensViaGemini(),
    (Api.EMBEDDINGS, Api.GENERATE_CONTENT): EmbeddingsViaGemini(),
    (Api.GENERATE_CONTENT, Api.GENERATE_CONTENT): GeminiPassthrough(),
    (Api.CHAT, Api.CONVERSE): CHAT_VIA_CONVERSE,
    (Api.MESSAGES, Api.CONVERSE): MESSAGES_VIA_CONVERSE,
    (Api.COUNT_TOKENS, Api.CONVERSE): EstimatedTokenCount(),
    (Api.COUNT_TOKENS, Api.BEDROCK_COUNT_TOKENS): CountTokensViaCountTokens(),
    (Api.EMBEDDINGS, Api.INVOKE_MODEL): EmbeddingsViaInvokeModel(),
    (Api.CONVERSE, Api.CONVERSE): ConversePassthrough(),
    (Api.EMBEDDINGS, Api.VERTEX_PREDICT): EmbeddingsViaVertexPredict(),
}


def exchange_for(api: Api, provider: ProviderClient, model: str = "") -> Exchange:
    """The exchange of ``api`` requests to ``provider`` (for ``model``, where its adapter
    routes by model): chosen on its first request, then kept on the provider (the hot path
    looks it up by API alone, or by API and the provider API the model takes)."""
    if provider.adapter.routes_by_model:
        return _routed(api, provider, provider.upstream_api(api, model))
    exchange: Exchange | None = provider.exchanges.get(api)
    if exchange is not None:
        return exchange
    if api is Api.RESPONSES or api is Api.RESPONSES_INPUT_TOKENS:  # per provider: by its adapter and settings
        return responses_exchange(provider, api)
    exchange = _EXCHANGES.get((api, provider.upstream_api(api)))
    if exchange is None:
        raise bad_request(f"provider {provider.name!r} ({provider.type}) does not serve the {api.value} API")
    provider.exchanges[api] = exchange = _adapted(exchange, provider)
    return exchange


def _routed(api: Api, provider: ProviderClient, upstream: Api) -> Exchange:
    """The exchange of ``api`` to the provider API ``upstream`` of a provider that routes by
    model (Vertex AI: Gemini models one way, Claude models another), with its body tweak."""
    exchange: Exchange | None = provider.routed_exchanges.get((api, upstream))
    if exchange is not None:
        return exchange
    if api is Api.RESPONSES:
        exchange = translated_responses(provider, upstream)
    elif api is Api.RESPONSES_INPUT_TOKENS:  # where the provider counts, else the gateway's bound
        exchange = (responses_tokens_via_count_tokens(provider.name) if upstream is Api.BEDROCK_COUNT_TOKENS
                    else EstimatedResponseTokens())
    else:
        exchange = _EXCHANGES.get((api, upstream))
    if exchange is None:
        raise bad_request(f"provider {provider.name!r} ({provider.type}) does not serve the {api.value} API "
                          f"for this model")
    provider.routed_exchanges[(api, upstream)] = exchange = _adapted(exchange, provider)
    return exchange


def _adapted(exchange: Exchange, provider: ProviderClient) -> Exchange:
    """``exchange`` with the adapter's body tweak, where it has one (never for an answer
    the gateway gives itself: nothing is sent)."""
    if provider.adapter.tweaks_body and not isinstance(exchange, LocalExchange):
        return AdaptedBody(exchange, provider)
    return exchange
