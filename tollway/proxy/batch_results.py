"""What an ended batch used, read from its results (pure: no I/O).

OpenAI: the batch object's ``status`` and its output file (one JSON line per request that
was answered, its ``response.body.usage``). Anthropic: ``processing_status`` and the results
(one JSON line per request, ``result.message.usage`` for those that succeeded). A line the
gateway cannot read counts as nothing used: the batch keeps its worst-case charge for it
(the provider ran it), see `usage_of_results`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from tollway.providers.adapters.base import MESSAGE_BATCHES
from tollway.providers.usage_extract import usage_from_anthropic, usage_from_openai, usage_from_responses
from tollway.usage import Usage

OPENAI_ENDED = frozenset({"completed", "failed", "expired", "cancelled"})
ANTHROPIC_ENDED = frozenset({"ended"})


@dataclass(slots=True)
class ResultsUsage:
    """The usage summed over a batch's results; ``unreadable``: results whose usage could
    not be read (their worst case stays charged)."""

    usage: Usage
    cost_nano: int
    answered: int
    unreadable: int


def ended(api: str, batch: Mapping[str, Any]) -> bool:
    """Whether the provider has ended the batch (no request of it will run any more)."""
    if api == MESSAGE_BATCHES:
        return batch.get("processing_status") in ANTHROPIC_ENDED
    return batch.get("status") in OPENAI_ENDED


def status_of(api: str, batch: Mapping[str, Any]) -> str:
    value = batch.get("processing_status" if api == MESSAGE_BATCHES else "status")
    return str(value) if value is not None else "unknown"


def usage_of_results(api: str, data: bytes, cost_of: Callable[[Usage], int]) -> ResultsUsage:
    """Sum the usage in ``data`` (JSON lines), each result priced by ``cost_of`` (at the batch price)."""
    reader = ResultsReader(api, cost_of)
    reader.feed(data)
    return reader.total()


class ResultsReader:
    """Sums results as they arrive, chunk by chunk: a batch's results may be large, and only
    the line being read is held."""

    def __init__(self, api: str, cost_of: Callable[[Usage], int]) -> None:
        self._api = api
        self._cost_of = cost_of
        self._pending = b""
        self._total = ResultsUsage(Usage(), 0, 0, 0)

    def feed(self, chunk: bytes) -> None:
        lines = (self._pending + chunk).split(b"\n")
        self._pending = lines.pop()
        for raw in lines:
            self._line(raw)

    def total(self) -> ResultsUsage:
        if self._pending:
            self._line(self._pending)
            self._pending = b""
        return self._total

    def _line(self, raw: bytes) -> None:
        total = self._total
        if not raw.strip():
            return
        try:
            line = orjson.loads(raw)
        except orjson.JSONDecodeError:
            total.unreadable += 1
            return
        usage = _anthropic_usage(line) if self._api == MESSAGE_BATCHES else _openai_usage(line)
        if usage is _NOT_RUN:
            return
        if usage is None:
            total.unreadable += 1
            return
        total.answered += 1
        total.cost_nano += self._cost_of(usage)
        total.usage = _plus(total.usage, usage)


_NOT_RUN = Usage(-1)  # a result of a request that never ran (cancelled, expired, an error before the model)


def _openai_usage(line: Any) -> Usage | None:
    response = line.get("response") if isinstance(line, dict) else None
    if not isinstance(response, dict):
        return _NOT_RUN if isinstance(line, dict) and line.get("error") else None
    body = response.get("body")
    usage = body.get("usage") if isinstance(body, dict) else None
    if not isinstance(usage, dict):
        return _NOT_RUN if isinstance(response.get("status_code"), int) and response["status_code"] >= 400 else None
    if "input_tokens" in usage:  # a Responses API answer
        return usage_from_responses(usage)
    return usage_from_openai(usage)


def _anthropic_usage(line: Any) -> Usage | None:
    result = line.get("result") if isinstance(line, dict) else None
    if not isinstance(result, dict):
        return None
    if result.get("type") != "succeeded":
        return _NOT_RUN  # errored, canceled, expired: not billed
    message = result.get("message")
    return usage_from_anthropic(message.get("usage") if isinstance(message, dict) else None)


def _plus(a: Usage, b: Usage) -> Usage:
    return Usage(a.prompt_tokens + b.prompt_tokens, a.completion_tokens + b.completion_tokens,
                 a.cached_tokens + b.cached_tokens, a.cache_write_tokens + b.cache_write_tokens,
                 a.reasoning_tokens + b.reasoning_tokens)
