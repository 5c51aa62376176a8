"""Read token usage out of provider response bodies into one `Usage` shape.

Tolerant by design: a provider that omits a field, or sends ``null``, counts as zero.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tollway.usage import Usage


def usage_from_openai(d: Mapping[str, Any] | None) -> Usage | None:
    """Usage from an OpenAI ``usage`` object: chat completions, completions and embeddings.

    Embeddings report only ``prompt_tokens`` and ``total_tokens``; when
    ``completion_tokens`` is absent it is taken as ``total - prompt`` (zero for embeddings).
    Returns None when there is no usage object at all.
    """
    if not isinstance(d, Mapping):
        return None
    prompt = _int(d.get("prompt_tokens"))
    completion = d.get("completion_tokens")
    if completion is None:
        completion = max(_int(d.get("total_tokens")) - prompt, 0)
    prompt_details = _mapping(d.get("prompt_tokens_details"))
    completion_details = _mapping(d.get("completion_tokens_details"))
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=_int(completion),
        cached_tokens=_int(prompt_details.get("cached_tokens")),
        cache_write_tokens=_int(prompt_details.get("cache_write_tokens")),
        reasoning_tokens=_int(completion_details.get("reasoning_tokens")),
    )


def usage_from_anthropic(d: Mapping[str, Any] | None) -> Usage | None:
    """Usage from an Anthropic ``usage`` object (a message, or message_start/message_delta).

    Anthropic's ``input_tokens`` excludes cache reads and writes; ``prompt_tokens`` here
    includes them, as OpenAI's does, so the two providers price alike.
    """
    if not isinstance(d, Mapping):
        return None
    cache_read = _int(d.get("cache_read_input_tokens"))
    cache_write = _int(d.get("cache_creation_input_tokens"))
    return Usage(
        prompt_tokens=_int(d.get("input_tokens")) + cache_read + cache_write,
        completion_tokens=_int(d.get("output_tokens")),
        cached_tokens=cache_read,
        cache_write_tokens=cache_write,
        reasoning_tokens=_int(_mapping(d.get("output_tokens_details")).get("thinking_tokens")),
    )


def usage_from_responses(d: Mapping[str, Any] | None) -> Usage | None:
    """Usage from a Responses API ``usage`` object (a response, or the response of a
    ``response.completed`` / ``response.incomplete`` / ``response.failed`` event).

    ``input_tokens`` includes cached ones (``input_tokens_details.cached_tokens``), and
    ``output_tokens`` includes reasoning (``output_tokens_details.reasoning_tokens``).
    """
    if not isinstance(d, Mapping):
        return None
    input_details = _mapping(d.get("input_tokens_details"))
    return Usage(
        prompt_tokens=_int(d.get("input_tokens")),
        completion_tokens=_int(d.get("output_tokens")),
        cached_tokens=_int(input_details.get("cached_tokens")),
        cache_write_tokens=_int(input_details.get("cache_write_tokens")),
        reasoning_tokens=_int(_mapping(d.get("output_tokens_details")).get("reasoning_tokens")),
    )


def _int(value: object) -> int:
    if isinstance(value, bool):
        return 0
    if isinstance(value, int | float):
        return int(value)
    return 0


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}
