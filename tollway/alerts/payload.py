"""An alert as the receiver gets it: the JSON body (or Slack's ``{"text"}``), and the
signature header ``x-tollway-signature: t=<unix>,v1=<hex hmac-sha256 of "t.body">``."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from tollway.alerts.config import FORECAST_EXHAUSTION
from tollway.alerts.detect import Alert, describe_span
from tollway.governance.decisions import iso_utc
from tollway.governance.model import NANO_PER_USD, Kind

SIGNATURE_HEADER = "x-tollway-signature"
_NOUNS = {Kind.BUDGET: "budget", Kind.TOKENS: "token limit", Kind.REQUESTS: "request limit"}


def _amount(check_kind: Kind, value: float) -> int | float:
    """Money in USD, counts as they are."""
    return value / NANO_PER_USD if check_kind is Kind.BUDGET else int(value)


def alert_body(alert: Alert, alert_id: str, now_ms: int) -> dict[str, Any]:
    """The JSON body (SPEC.md §8's fields, and what a receiver needs to act on it)."""
    check, reading = alert.check, alert.reading
    body: dict[str, Any] = {
        "event": alert.event, "alert_id": alert_id,
        "level": check.scope.level.value, "id": check.scope.id, "name": check.scope.name,
        "virtual_key_id": alert.virtual_key_id,
        "kind": check.kind.value, "unit": "usd" if check.kind is Kind.BUDGET else check.kind.value,
        "limit": _amount(check.kind, check.limit), "used": _amount(check.kind, reading.used),
        "reserved": _amount(check.kind, reading.reserved), "threshold": alert.threshold,
        "window_start": iso_utc(alert.window_start_ms), "reset_at": iso_utc(alert.reset_at_ms),
        "at": iso_utc(now_ms), "message": message(alert, now_ms),
    }
    if alert.exhausted_at_ms is not None:
        body["exhausted_at"] = iso_utc(alert.exhausted_at_ms)
        body["rate_per_hour"] = _amount(check.kind, alert.rate_per_hour or 0.0) if check.kind is Kind.BUDGET \
            else round(alert.rate_per_hour or 0.0, 3)
    return body


def message(alert: Alert, now_ms: int) -> str:
    """One sentence for people: the Slack text, and ``message`` in the JSON body."""
    check, reading = alert.check, alert.reading
    what = f"the {_NOUNS[check.kind]} of {check.scope.level.value.replace('_', ' ')} {check.scope.name or check.scope.id}"
    if check.scope.name and check.scope.name != check.scope.id:
        what += f" ({check.scope.id})"
    share = _shown(check.kind, reading.used + reading.reserved, check.limit)
    resets = f"it resets at {iso_utc(alert.reset_at_ms)}"
    if alert.event == FORECAST_EXHAUSTION and alert.exhausted_at_ms is not None:
        return (f"At the last hour's rate {what} runs out in {describe_span(alert.exhausted_at_ms - now_ms)} "
                f"({share} used), before {resets}.")
    return f"{what[0].upper()}{what[1:]} crossed {alert.threshold:.0%}: {share} used; {resets}."


def _shown(kind: Kind, taken: int, limit: int) -> str:
    """"$9.00 of $10.00", "8 of 10 requests"."""
    if kind is Kind.BUDGET:
        return f"${taken / NANO_PER_USD:,.2f} of ${limit / NANO_PER_USD:,.2f}"
    return f"{taken:,} of {limit:,} {kind.value}"


def slack_body(alert: Alert, now_ms: int) -> dict[str, Any]:
    """Slack's incoming-webhook shape (also taken by Mattermost, Discord's /slack, …)."""
    return {"text": f":rotating_light: Tollway: {message(alert, now_ms)}"}


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The ``x-tollway-signature`` value of ``body`` sent at ``timestamp`` (unix seconds)."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"
