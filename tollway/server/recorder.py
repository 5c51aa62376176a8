"""Fans a request's outcome out to the metrics and the (batched) request log."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

from tollway.governance.decisions import Decision
from tollway.governance.model import NANO_PER_USD
from tollway.proxy.outcome import Outcome
from tollway.server.denial_log import UNAUTHENTICATED, DenialSampler
from tollway.store.key_activity import KeyActivity
from tollway.store.request_log import RequestLogRecord, RequestLogWriter
from tollway.telemetry import Metrics

# Requests whose key did not authenticate: they do not make the key "used".
_KEY_REFUSED = frozenset({*UNAUTHENTICATED, Decision.VIRTUAL_KEY_BLOCKED.value, Decision.VIRTUAL_KEY_EXPIRED.value})


class Recorder:
    """``unauthenticated_per_minute``: how many 401s without a valid virtual key get a
    request log row each per minute (`DenialSampler`); None logs every one. ``activity``
    notes each key's latest request (its ``last_used_at``)."""

    def __init__(self, metrics: Metrics, log_writer: RequestLogWriter | None,
                 unauthenticated_per_minute: int | None = None, activity: KeyActivity | None = None) -> None:
        self._metrics = metrics
        self._log = log_writer
        self._sampler = DenialSampler(unauthenticated_per_minute) if unauthenticated_per_minute is not None else None
        self._activity = activity

    def record(self, outcome: Outcome) -> None:
        self._metrics.observe(outcome)
        if outcome.key_id is not None and self._activity is not None and outcome.decision not in _KEY_REFUSED:
            self._activity.note(outcome.key_id, outcome.at_ms)
        if self._log is None:
            return
        if self._sampler is not None and outcome.decision in UNAUTHENTICATED:
            own_row, summaries = self._sampler.take(outcome.decision, outcome.at_ms)
            for summary in summaries:
                self._log.write(summary)
            if not own_row:
                return
        self._log.write(to_log_record(outcome))

    def flush_summaries(self, now_ms: int, final: bool = False) -> None:
        """Write the summary of a minute that ended with no denial after it (``final``:
        of the current minute too, at shutdown)."""
        if self._log is not None and self._sampler is not None:
            for summary in self._sampler.summaries(now_ms, final):
                self._log.write(summary)


def to_log_record(outcome: Outcome) -> RequestLogRecord:
    scope = outcome.denied_scope
    usage = outcome.usage
    would = outcome.would_deny
    would_scope = would.scope if would is not None else None
    return RequestLogRecord(
        at=datetime.fromtimestamp(outcome.at_ms / 1000, timezone.utc),
        request_id=outcome.request_id,
        virtual_key_id=outcome.key_id,
        team_id=outcome.team_id,
        customer_id=outcome.customer_id,
        provider=outcome.provider or None,
        model=outcome.model or None,
        status=outcome.status,
        decision=outcome.decision,
        denied_level=scope.level.value if scope else None,
        denied_id=scope.id if scope else None,
        would_deny=would.decision.value if would is not None else None,
        would_deny_level=would_scope.level.value if would_scope else None,
        would_deny_id=would_scope.id if would_scope else None,
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        cached_tokens=usage.cached_tokens,
        cost=Decimal(outcome.cost_nano) / NANO_PER_USD,
        latency_ms=round(outcome.latency_ms, 3),
        stream=outcome.stream,
        error=outcome.error,
        route=outcome.api or None,
        tags=",".join(outcome.tags) if outcome.tags else None,
        end_user=outcome.end_user,
    )
