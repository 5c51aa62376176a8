"""How numbers, times and limits read on the page: money, periods, "resets in", and a
usage meter for each budget and rate-limit side of an API view."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any
from urllib.parse import quote

_DURATION = re.compile(r"^(\d+)([smhdwMY])$")
_UNITS = {"s": "second", "m": "minute", "h": "hour", "d": "day", "w": "week", "M": "month", "Y": "year"}
WARN_AT = 0.8


def money(amount: float | int | None) -> str:
    """USD with the precision small amounts need: $12.50, $0.25, $0.0000102."""
    if amount is None:
        return "—"
    value = float(amount)
    if value == 0:
        return "$0.00"
    if abs(value) >= 1:
        return f"${value:,.2f}"
    decimals = min(8, max(2, 2 - math.floor(math.log10(abs(value)))))
    text = f"{value:.{decimals}f}".rstrip("0")
    whole, _, fraction = text.partition(".")
    return f"${whole}.{fraction.ljust(2, '0')}"


def number(value: float | int | None) -> str:
    if value is None:
        return "—"
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"


def period(duration: str | None) -> str:
    """``15m`` as "15 minutes", ``1M`` as "month"."""
    match = _DURATION.match(duration or "")
    if not match:
        return duration or "—"
    count, unit = int(match[1]), _UNITS[match[2]]
    return unit if count == 1 else f"{count} {unit}s"


def parse_iso(text: str | None) -> datetime | None:
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def when(text: str | None) -> str:
    """An API time as "2025-01-31 14:05:09 UTC"."""
    moment = parse_iso(text)
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC") if moment else "—"


def span(seconds: float) -> str:
    """A length of time in its two largest units: "42 s", "5 min", "3 h 12 min", "2 d 4 h"."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400
    if hours < 1:
        return f"{minutes} min"
    if days < 1:
        rest = minutes % 60
        return f"{hours} h {rest} min" if rest else f"{hours} h"
    rest = hours % 24
    return f"{days} d {rest} h" if rest else f"{days} d"


@dataclass(frozen=True, slots=True)
class Meter:
    """One budget or rate-limit side, or a concurrency limit: how much of it is used and
    when it resets (a concurrency limit never does: its use is the requests in flight)."""

    label: str
    kind: str  # budget, tokens, requests or in_flight
    used: float
    reserved: float
    limit: float
    duration: str | None
    reset_at: str | None
    now_ms: int
    shadow: bool = False  # mode: shadow: counted, never denies (shown as a badge)

    @property
    def share(self) -> float:
        return (self.used + self.reserved) / self.limit if self.limit else 0.0

    @property
    def percent(self) -> float:
        """Bar width, 0 to 100."""
        return round(min(1.0, self.share) * 100, 1)

    @property
    def percent_text(self) -> str:
        """The share used, "<0.1 %" rather than a misleading "0.0 %" for a little use."""
        if 0 < self.share < 0.001:
            return "<0.1 %"
        return f"{self.share * 100:.1f} %"

    @property
    def state(self) -> str:
        return "full" if self.share >= 1 else "warn" if self.share >= WARN_AT else "ok"

    def amount(self, value: float) -> str:
        return money(value) if self.kind == "budget" else number(value)

    @property
    def text(self) -> str:
        if self.kind == "in_flight":
            return f"{number(self.reserved)} of {number(self.limit)} requests in flight"
        unit = "" if self.kind == "budget" else f" {self.kind}"
        reserved = f" (+{self.amount(self.reserved)} in flight)" if self.reserved else ""
        return f"{self.amount(self.used)}{reserved} of {self.amount(self.limit)}{unit} per {period(self.duration)}"

    @property
    def reset_in(self) -> str:
        moment = parse_iso(self.reset_at)
        if moment is None:
            return ""
        return span(moment.timestamp() - self.now_ms / 1000)


def meters(view: dict[str, Any] | None, now_ms: int, label: str = "") -> list[Meter]:
    """The meters of an entity view's ``budget``, ``rate_limit`` and ``concurrency`` (any may be null)."""
    if not view:
        return []
    prefix = f"{label} " if label else ""
    out = []
    budget = view.get("budget")
    if budget:
        out.append(Meter(f"{prefix}budget".strip().capitalize(), "budget", budget["current_usage"],
                         budget.get("reserved") or 0, budget["max_limit"], budget["reset_duration"],
                         budget.get("reset_at"), now_ms, budget.get("mode") == "shadow"))
    rate = view.get("rate_limit") or {}
    for side, kind in (("request", "requests"), ("token", "tokens")):
        if rate.get(f"{side}_max_limit") is not None and rate.get(f"{side}_reset_duration"):
            out.append(Meter(f"{prefix}{kind}".strip().capitalize(), kind, rate.get(f"{side}_current_usage") or 0,
                             rate.get(f"{side}_reserved") or 0, rate[f"{side}_max_limit"],
                             rate[f"{side}_reset_duration"], rate.get(f"{side}_reset_at"), now_ms,
                             rate.get("mode") == "shadow"))
    concurrency = view.get("concurrency")
    if concurrency:
        out.append(Meter(f"{prefix}in flight".strip().capitalize(), "in_flight", 0, concurrency.get("in_flight") or 0,
                         concurrency["max_in_flight"], None, None, now_ms, concurrency.get("mode") == "shadow"))
    return out


def usage_meter(entry: dict[str, Any], now_ms: int) -> Meter:
    """A meter for one row of ``/api/governance/usage``."""
    label = "In flight" if entry["kind"] == "in_flight" else entry["kind"].capitalize()
    return Meter(label, entry["kind"], entry["used"], entry.get("reserved") or 0,
                 entry["limit"], entry["duration"], entry.get("reset_at"), now_ms, entry.get("mode") == "shadow")


LEVEL_NAMES = {"provider": "provider", "model": "model config", "virtual_key": "virtual key",
               "provider_config": "provider config", "team": "team", "customer": "customer", "tag": "tag",
               "end_user": "end user", "limit": "limit rule"}


def level_name(level: str | None) -> str:
    return LEVEL_NAMES.get(level or "", level or "—")


_ENTITY_PAGES = {"provider": "/ui/providers/", "model": "/ui/models/", "virtual_key": "/ui/keys/",
                 "team": "/ui/teams/", "customer": "/ui/customers/",
                 "tag": "/ui/logs?tag="}  # a tag has no page of its own: its requests


def entity_url(level: str | None, ident: str | None, virtual_key_id: str | None = None) -> str | None:
    """The UI page of the entity at ``level`` (a provider config's is its key's page)."""
    if level == "provider_config":
        level, ident = "virtual_key", virtual_key_id
    if level == "limit" and ident:  # a templated rule's value ("rule:value") is shown on the rule's page
        return "/ui/limits/" + quote(ident.partition(":")[0], safe="")
    if level == "end_user" and ident:  # an end user has no page of their own: their requests
        return "/ui/logs?end_user=" + quote(ident, safe="")
    base = _ENTITY_PAGES.get(level or "")
    return base + quote(ident, safe="") if base and ident else None


def plain(value: float | int | None) -> str:
    """A number as a form field shows it: 0.01, 5, 1000 (no exponent, no separators)."""
    if value is None:
        return ""
    text = format(Decimal(str(value)), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def latency(ms: float | int | None) -> str:
    """A request's latency, one form everywhere: "0.4 ms", "312 ms", "1,204 ms"."""
    if ms is None:
        return "—"
    return f"{ms:,.1f} ms" if ms < 10 else f"{ms:,.0f} ms"


def limit_amount(entry: dict[str, object], field: str) -> str:
    """A limit's amount as its unit reads: money for budgets, a count otherwise."""
    value = entry.get(field)
    if not isinstance(value, int | float):
        return "—"
    return money(value) if entry.get("unit") == "usd" else number(value)
