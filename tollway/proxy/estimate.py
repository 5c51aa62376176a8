"""How much a request is expected to use, for its reservation before the call."""

from __future__ import annotations

from tollway.config.schema import EstimateConfig
from tollway.providers.client import Api
from tollway.proxy.request import ClientRequest


def estimate_tokens(request: ClientRequest, config: EstimateConfig) -> tuple[int, int]:
    """(prompt, completion) token estimates.

    The prompt is estimated from the body's size (cheap and never low for JSON, whose
    punctuation only adds bytes); the completion is ``max_tokens`` (``max_output_tokens`` on the
    Responses API) when the client set it, else the configured default. Settlement corrects both to the actual usage.
    """
    if request.api is Api.COUNT_TOKENS or request.api is Api.RESPONSES_INPUT_TOKENS:  # a request slot, no tokens
        return 0, 0
    prompt = max(1, request.size // config.bytes_per_prompt_token)
    if request.api is Api.EMBEDDINGS:
        return prompt, 0
    return prompt, request.max_tokens if request.max_tokens is not None else config.default_completion_tokens
