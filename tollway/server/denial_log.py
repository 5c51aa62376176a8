"""Request log rows for unauthenticated denials, sampled per minute.

A 401 for a missing or unknown virtual key costs the client nothing, so a client can
send them as fast as the network allows; a row each would let anyone fill the request
log (and its database) without a key. Per minute, the first ``per_minute`` of them get
their own row (enough to see what a misconfigured client sends); the rest of the
minute is folded into one summary row per decision that carries their count. Every
one of them is still counted in ``tollway_requests_total`` (label ``decision``).
"""

from __future__ import annotations

from datetime import UTC, datetime

from tollway.governance.decisions import Decision
from tollway.store.request_log import RequestLogRecord

UNAUTHENTICATED = frozenset({Decision.VIRTUAL_KEY_REQUIRED.value, Decision.VIRTUAL_KEY_NOT_FOUND.value})
_MINUTE_MS = 60_000


class DenialSampler:
    """Decides, per unauthenticated denial, whether it gets its own row; keeps the count
    of those that did not, until `summaries` hands them over as rows. Time comes from
    the outcomes (and the caller), so the sampler holds no clock."""

    def __init__(self, per_minute: int) -> None:
        self._per_minute = per_minute
        self._minute = -1  # the minute (ms since the epoch // 60,000) being counted
        self._logged = 0
        self._folded: dict[str, int] = {}

    def take(self, decision: str, at_ms: int) -> tuple[bool, list[RequestLogRecord]]:
        """(whether this denial gets a row of its own, summary rows of minutes now past)."""
        minute = at_ms // _MINUTE_MS
        summaries = self.summaries(at_ms) if minute != self._minute else []
        self._minute = minute
        if self._logged < self._per_minute:
            self._logged += 1
            return True, summaries
        self._folded[decision] = self._folded.get(decision, 0) + 1
        return False, summaries

    def summaries(self, now_ms: int, final: bool = False) -> list[RequestLogRecord]:
        """Summary rows for a counted minute that is over by ``now_ms`` (none otherwise);
        ``final`` (at shutdown): for the current minute too."""
        if self._minute < 0 or (now_ms // _MINUTE_MS == self._minute and not final):
            return []
        start = datetime.fromtimestamp(self._minute * _MINUTE_MS / 1000, UTC)
        rows = [_summary(decision, count, start, self._minute) for decision, count in sorted(self._folded.items())]
        self._minute, self._logged, self._folded = -1, 0, {}
        return rows


def _summary(decision: str, count: int, start: datetime, minute: int) -> RequestLogRecord:
    return RequestLogRecord(
        at=start, request_id=f"folded-{minute}-{decision}", status=401, decision=decision,
        error=(f"{count} more requests denied {decision} in the minute from {start:%Y-%m-%d %H:%M} UTC, "
               "folded into this row (request_log_unauthenticated_per_minute); /metrics counts each"),
    )
