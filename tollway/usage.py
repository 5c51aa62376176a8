"""Token usage of one upstream call, normalised across provider APIs."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens reported by a provider for one request.

    ``prompt_tokens`` includes cached and cache-write tokens (OpenAI's convention);
    ``cached_tokens`` and ``cache_write_tokens`` say how many of them were read from or
    written to the provider's prompt cache, so pricing can charge them differently.
    """

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


ZERO_USAGE = Usage()
