"""Reading what an ended batch used from its results: the same sums however the results
arrive in chunks; results that never ran count as nothing; unreadable ones are counted apart
(their worst case stays charged)."""

from __future__ import annotations

import orjson
import pytest

from tollway.providers.adapters.base import MESSAGE_BATCHES, OPENAI_BATCHES
from tollway.proxy.batch_results import ResultsReader
from tollway.usage import Usage


def cost_of(usage: Usage) -> int:
    return usage.prompt_tokens * 2 + usage.completion_tokens * 3


OPENAI = b"\n".join([
    orjson.dumps({"custom_id": "a", "response": {"status_code": 200, "body": {"usage": {
        "prompt_tokens": 10, "completion_tokens": 5, "prompt_tokens_details": {"cached_tokens": 4}}}}}),
    orjson.dumps({"custom_id": "b", "response": {"status_code": 200, "body": {"usage": {
        "input_tokens": 7, "output_tokens": 1, "total_tokens": 8}}}}),  # a Responses API answer
    orjson.dumps({"custom_id": "c", "response": None, "error": {"code": "batch_expired"}}),
    b'{"custom_id": "d", "response": {"status_code": 200, "body": {}}}',
    b"not json",
]) + b"\n"
ANTHROPIC = b"\n".join([
    orjson.dumps({"custom_id": "a", "result": {"type": "succeeded", "message": {"usage": {
        "input_tokens": 10, "output_tokens": 5}}}}),
    orjson.dumps({"custom_id": "b", "result": {"type": "canceled"}}),
    orjson.dumps({"custom_id": "c", "result": {"type": "errored", "error": {"type": "invalid_request"}}}),
])


@pytest.mark.parametrize("step", [1, 3, 17, 10_000])
def test_openai_results_sum_the_same_whatever_the_chunks(step: int) -> None:
    reader = ResultsReader(OPENAI_BATCHES, cost_of)
    for start in range(0, len(OPENAI), step):
        reader.feed(OPENAI[start:start + step])
    total = reader.total()
    assert (total.usage.prompt_tokens, total.usage.completion_tokens, total.usage.cached_tokens) == (17, 6, 4)
    assert (total.answered, total.unreadable, total.cost_nano) == (2, 2, 10 * 2 + 5 * 3 + 7 * 2 + 1 * 3)


def test_anthropic_results_count_only_the_requests_that_succeeded() -> None:
    reader = ResultsReader(MESSAGE_BATCHES, cost_of)
    reader.feed(ANTHROPIC)  # no final line break
    total = reader.total()
    assert (total.usage.prompt_tokens, total.usage.completion_tokens, total.answered, total.unreadable) == (10, 5, 1, 0)
