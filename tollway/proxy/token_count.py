"""Token counting: `POST /v1/messages/count_tokens` (forwarded to Anthropic providers) and
`POST /v1/responses/input_tokens` (forwarded to providers with the Responses API), answered
by the gateway for the others. Governed by request limits only: a request slot is reserved
and nothing is ever charged in tokens or money (the estimate of both APIs is zero)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import orjson

from tollway.providers.client import Api
from tollway.proxy.passthrough import AnthropicPassthrough, LocalExchange
from tollway.proxy.request import ClientRequest

COUNTED_BY = b"x-tollway-token-count"
_MESSAGE_OVERHEAD = 4  # role and framing tokens of one message
_IMAGE_TOKENS = 1600  # Anthropic's cap for one image (about 1.15 megapixels at 750 pixels a token)


class CountTokensPassthrough(AnthropicPassthrough):
    """Anthropic client, Anthropic provider: the provider counts."""

    upstream_api = Api.COUNT_TOKENS


class EstimatedTokenCount(LocalExchange):
    """Anthropic client, any other provider: an upper bound counted by the gateway.

    A token covers at least one byte of UTF-8 text, so the bytes of every text (messages,
    system prompt, tool definitions) plus a per-message overhead bound the true count from
    above, whatever the tokenizer; images count Anthropic's per-image cap. The answer says
    so in the ``x-tollway-token-count: estimated`` header.
    """

    upstream_api = Api.COUNT_TOKENS
    headers: ClassVar[list[tuple[bytes, bytes]]] = [(COUNTED_BY, b"estimated")]

    def answer(self, request: ClientRequest) -> bytes:
        return orjson.dumps({"input_tokens": estimated_input_tokens(request.body)})


class EstimatedResponseTokens(LocalExchange):
    """`/v1/responses/input_tokens` for a provider without the Responses API: an upper bound,
    the UTF-8 bytes of the request's JSON (its input, instructions, tools and text format)."""

    upstream_api = Api.RESPONSES_INPUT_TOKENS
    headers: ClassVar[list[tuple[bytes, bytes]]] = [(COUNTED_BY, b"estimated")]

    def answer(self, request: ClientRequest) -> bytes:
        counted = {name: request.body[name] for name in _RESPONSE_INPUTS if request.body.get(name) is not None}
        return orjson.dumps({"object": "response.input_tokens", "input_tokens": len(orjson.dumps(counted))})


_RESPONSE_INPUTS = ("input", "instructions", "tools", "text")


def estimated_input_tokens(body: Mapping[str, Any]) -> int:
    """The upper bound described in `EstimatedTokenCount`."""
    messages = body.get("messages") or []
    total = sum(_tokens(message.get("content")) + _MESSAGE_OVERHEAD for message in messages if isinstance(message, Mapping))
    if body.get("system"):
        total += _tokens(body["system"]) + _MESSAGE_OVERHEAD
    if body.get("tools"):
        total += len(orjson.dumps(body["tools"]))
    return total


def _tokens(content: object) -> int:
    if isinstance(content, str):
        return len(content.encode())
    if not isinstance(content, list):
        return 0
    total = 0
    for block in content:
        if not isinstance(block, Mapping):
            continue
        if block.get("type") == "image":
            total += _IMAGE_TOKENS
        elif block.get("type") == "text":
            total += len(str(block.get("text") or "").encode())
        else:  # tool use and results, documents, thinking: every byte of the block
            total += len(orjson.dumps(block))
    return total
