"""Unauthenticated denials: a few rows a minute, the rest folded into one summary row
per decision with their count."""

from __future__ import annotations

from tollway.server.denial_log import DenialSampler

MINUTE = 60_000
T0 = 1_700_000_040_000  # the start of a minute


def test_the_first_of_a_minute_get_rows_the_rest_a_summary_at_the_next_minute() -> None:
    sampler = DenialSampler(per_minute=3)
    own = [sampler.take("virtual_key_required" if i % 2 else "virtual_key_not_found", T0 + i)[0] for i in range(10)]
    assert own == [True] * 3 + [False] * 7
    assert sampler.summaries(T0 + MINUTE - 1) == []  # the minute is not over
    own_row, summaries = sampler.take("virtual_key_required", T0 + MINUTE)
    assert own_row
    assert {(row.decision, row.error.split(" ")[0]) for row in summaries} == {
        ("virtual_key_not_found", "3"), ("virtual_key_required", "4")}
    assert all(row.status == 401 and row.request_id.startswith("folded-") for row in summaries)


def test_a_minute_with_no_denial_after_it_is_summarised_by_the_periodic_flush_or_at_shutdown() -> None:
    sampler = DenialSampler(per_minute=0)
    for i in range(5):
        sampler.take("virtual_key_required", T0 + i)
    assert sampler.summaries(T0 + 10) == []
    assert [row.error.split(" ")[0] for row in sampler.summaries(T0 + 10, final=True)] == ["5"]
    assert sampler.summaries(T0 + 5 * MINUTE, final=True) == []  # handed over once


def test_nothing_folded_means_no_summary() -> None:
    sampler = DenialSampler(per_minute=10)
    sampler.take("virtual_key_required", T0)
    assert sampler.summaries(T0 + MINUTE) == []
