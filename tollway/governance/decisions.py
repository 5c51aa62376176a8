"""Governance decisions as values: the enum, its HTTP status, the error body and headers.

Every denial names the level and entity that denied, with a message a person can act
on. Statuses live in one mapping so that no route invents its own.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone

from tollway.governance.durations import Duration
from tollway.governance.model import NANO_PER_USD, Kind, Level, Scope


class Decision(str, enum.Enum):
    """What governance decided for one request."""

    ALLOW = "allow"
    VIRTUAL_KEY_REQUIRED = "virtual_key_required"
    VIRTUAL_KEY_NOT_FOUND = "virtual_key_not_found"
    VIRTUAL_KEY_BLOCKED = "virtual_key_blocked"
    VIRTUAL_KEY_EXPIRED = "virtual_key_expired"
    PROVIDER_BLOCKED = "provider_blocked"
    MODEL_BLOCKED = "model_blocked"
    TAG_NOT_ALLOWED = "tag_not_allowed"
    LIMIT_VALUE_MISSING = "limit_value_missing"
    TOKEN_LIMITED = "token_limited"
    REQUEST_LIMITED = "request_limited"
    BUDGET_EXCEEDED = "budget_exceeded"
    CONCURRENCY_LIMITED = "concurrency_limited"

    @property
    def status(self) -> int:
        """The HTTP status a client gets (200 for allow)."""
        return _STATUS[self]


_STATUS: dict[Decision, int] = {
    Decision.ALLOW: 200,
    Decision.VIRTUAL_KEY_REQUIRED: 401,
    Decision.VIRTUAL_KEY_NOT_FOUND: 401,  # Bifrost answers 403; users asked for 401 (SPEC §3)
    Decision.VIRTUAL_KEY_BLOCKED: 403,
    Decision.VIRTUAL_KEY_EXPIRED: 401,
    Decision.PROVIDER_BLOCKED: 403,
    Decision.MODEL_BLOCKED: 403,
    Decision.TAG_NOT_ALLOWED: 403,
    Decision.LIMIT_VALUE_MISSING: 400,
    Decision.TOKEN_LIMITED: 429,
    Decision.REQUEST_LIMITED: 429,
    Decision.BUDGET_EXCEEDED: 402,
    Decision.CONCURRENCY_LIMITED: 429,
}

DECISION_FOR_KIND: dict[Kind, Decision] = {
    Kind.REQUESTS: Decision.REQUEST_LIMITED,
    Kind.TOKENS: Decision.TOKEN_LIMITED,
    Kind.BUDGET: Decision.BUDGET_EXCEEDED,
    Kind.IN_FLIGHT: Decision.CONCURRENCY_LIMITED,
}

_LEVEL_LABEL: dict[Level, str] = {
    Level.PROVIDER: "Provider",
    Level.MODEL: "Model config",
    Level.VIRTUAL_KEY: "Virtual key",
    Level.PROVIDER_CONFIG: "Provider config",
    Level.TEAM: "Team",
    Level.CUSTOMER: "Customer",
    Level.TAG: "Tag",
    Level.END_USER: "End user",
    Level.LIMIT: "Limit rule",
}


@dataclass(frozen=True, slots=True)
class Denial:
    """Why a request is refused. ``limit`` and ``used`` are in the counter's unit
    (nano-dollars for budgets); ``used`` includes reservations of requests in flight."""

    decision: Decision
    message: str
    scope: Scope | None = None
    limit: int | None = None
    used: int | None = None
    reset_at_ms: int | None = None
    retry_after_s: int | None = None
    reserved: int | None = None  # of ``used``, what requests in flight hold (not yet spent)
    requested: int | None = None  # what this request needed on the limit


def key_required() -> Denial:
    return Denial(
        Decision.VIRTUAL_KEY_REQUIRED,
        "This gateway requires a virtual key: send it as 'Authorization: Bearer tw-…' "
        "or in the x-tollway-vk header",
    )


def key_not_found() -> Denial:
    # The value is never echoed: it may be a secret pasted into the wrong place.
    return Denial(Decision.VIRTUAL_KEY_NOT_FOUND, "The virtual key presented is not known to this gateway")


def key_blocked(scope: Scope) -> Denial:
    return Denial(Decision.VIRTUAL_KEY_BLOCKED, f"Virtual key '{scope.name}' is inactive", scope)


def key_expired(scope: Scope, expired_at_ms: int, retired_value: bool) -> Denial:
    """A key past its ``expires_at``, or a value replaced by a rotation past its grace period."""
    if retired_value:
        message = (f"This value of virtual key '{scope.name}' was replaced by a rotation; its grace period ended "
                   f"at {iso_utc(expired_at_ms)}: use the key's new value")
    else:
        message = f"Virtual key '{scope.name}' expired at {iso_utc(expired_at_ms)}"
    return Denial(Decision.VIRTUAL_KEY_EXPIRED, message, scope)


def budget_headers(remaining_nano: int, reset_at_ms: int) -> list[tuple[bytes, bytes]]:
    """``x-tollway-budget-remaining`` (USD, plain decimal) and ``x-tollway-budget-reset``
    (RFC 3339) of the tightest budget."""
    return [(b"x-tollway-budget-remaining", usd_plain(remaining_nano)), (b"x-tollway-budget-reset", _reset_at(reset_at_ms))]


def usd_plain(nano: int) -> bytes:
    """Nano-dollars as a plain decimal of USD, exact and without trailing zeros ("9.9995"); 0 below zero."""
    if nano <= 0:
        return b"0"
    whole, fraction = divmod(nano, NANO_PER_USD)
    if not fraction:
        return b"%d" % whole
    return (b"%d.%09d" % (whole, fraction)).rstrip(b"0")


@functools.lru_cache(maxsize=1024)
def _reset_at(ms: int) -> bytes:
    # A window's reset instant stays the same for the whole window: formatted once, not per request.
    return iso_utc(ms).encode()


def provider_blocked(scope: Scope, provider: str, allowed: Iterable[str]) -> Denial:
    message = f"Virtual key '{scope.name}' may not use provider '{provider}'; allowed: {_listing(allowed)}"
    return Denial(Decision.PROVIDER_BLOCKED, message, scope)


def model_blocked(scope: Scope, provider: str, model: str, allowed: Iterable[str]) -> Denial:
    message = (
        f"{_LEVEL_LABEL[scope.level]} '{scope.name}' may not use model '{model}' on provider "
        f"'{provider}'; allowed: {_listing(allowed)}"
    )
    return Denial(Decision.MODEL_BLOCKED, message, scope)


def tag_not_allowed(scope: Scope, tag: str, allowed: Iterable[str]) -> Denial:
    """A request naming ``tag`` with a key whose ``allowed_tags`` do not include it."""
    message = f"Virtual key '{scope.name}' may not tag requests '{tag}'; allowed tags: {_listing(allowed)}"
    return Denial(Decision.TAG_NOT_ALLOWED, message, scope)


def limit_value_missing(scope: Scope, dimension: str) -> Denial:
    """A request without the ``dimension`` (an end user, a tag, …) a limit rule counts
    per, where the rule refuses such requests (``when_missing: deny``)."""
    message = (f"{_LEVEL_LABEL[scope.level]} '{scope.name}' counts requests per {dimension} and this request "
               f"names no {dimension}")
    return Denial(Decision.LIMIT_VALUE_MISSING, message, scope)


# A slot frees when any request in flight ends, which no one can predict: clients are
# told to retry in a second (SPEC §8), the shortest wait Retry-After can express.
CONCURRENCY_RETRY_AFTER_S = 1


def concurrency_denial(scope: Scope, limit: int, in_flight: int, now_ms: int, waited_ms: int = 0) -> Denial:
    """The denial of a request that found all ``limit`` in-flight slots of ``scope`` taken
    (after waiting ``waited_ms`` in the queue, when it did)."""
    message = (f"{_LEVEL_LABEL[scope.level]} '{scope.name}' allows {limit} requests in flight at once "
               f"and {in_flight} are")
    if waited_ms:
        message += f"; no slot freed within the {waited_ms} ms this request waited"
    message += f"; try again in {CONCURRENCY_RETRY_AFTER_S} s"
    return Denial(Decision.CONCURRENCY_LIMITED, message, scope, limit, in_flight,
                  now_ms + CONCURRENCY_RETRY_AFTER_S * 1000, CONCURRENCY_RETRY_AFTER_S)


def limit_denial(
    kind: Kind, scope: Scope, limit: int, used: int, amount: int, duration: Duration, reset_at_ms: int, now_ms: int,
    *, reserved: int = 0, strict: bool = False,
) -> Denial:
    """The denial for a limit that ``amount`` more would exceed (``used`` counts the
    ``reserved`` part held by requests in flight; ``strict``: ``amount`` is a worst case)."""
    retry_after = max(1, -((now_ms - reset_at_ms) // 1000))  # ceil without floats
    who = f"{_LEVEL_LABEL[scope.level]} '{scope.name}'"
    needs = "worst case" if strict else "estimated"
    if kind is Kind.BUDGET:
        message = f"{who} has used {usd(used)} of its {usd(limit)} budget for {duration}"
        if reserved:
            message += f" ({usd(used - reserved)} spent, {usd(reserved)} reserved by requests in flight)"
        if used < limit:
            message += f" and this request's {needs} {usd(amount)} does not fit"
        message += f"; it resets at {iso_utc(reset_at_ms)}"
    else:
        unit = "requests" if kind is Kind.REQUESTS else "tokens"
        message = f"{who} allows {limit} {unit} per {duration}"
        if amount > limit:
            message += f"; this request needs up to {amount} {unit}, more than the whole limit"
        elif kind is Kind.TOKENS:
            message += f"; {used} are used or reserved"
            if reserved:
                message += f" ({used - reserved} spent, {reserved} reserved by requests in flight)"
            message += f" and this request needs up to {amount}"
        elif reserved:
            message += f"; {used - reserved} are spent and {reserved} reserved by requests in flight"
        message += f"; try again in {retry_after} s"
    return Denial(DECISION_FOR_KIND[kind], message, scope, limit, used, reset_at_ms, retry_after, reserved, amount)


def denial_headers(denial: Denial) -> list[tuple[bytes, bytes]]:
    """``Retry-After`` (whole seconds, at least 1) on 429 and 402 when a reset is known."""
    if denial.retry_after_s is None or denial.decision.status not in (429, 402):
        return []
    return [(b"retry-after", str(max(1, denial.retry_after_s)).encode())]


RateLimitHeaderParts = tuple[tuple[bytes, bytes], bytes, bytes]


def rate_limit_header_parts(kind: Kind, limit: int) -> RateLimitHeaderParts:
    """What never changes in one side's ``x-ratelimit-*`` headers: the whole limit header
    and the names of the other two (computed once per limit, not per request)."""
    side = b"requests" if kind is Kind.REQUESTS else b"tokens"
    return (b"x-ratelimit-limit-" + side, b"%d" % limit), b"x-ratelimit-remaining-" + side, b"x-ratelimit-reset-" + side


def rate_limit_headers(parts: RateLimitHeaderParts, remaining: int, reset_in_ms: int) -> list[tuple[bytes, bytes]]:
    """OpenAI's ``x-ratelimit-*`` headers for one side (requests or tokens)."""
    limit_header, remaining_name, reset_name = parts
    return [limit_header, (remaining_name, b"%d" % max(0, remaining)), (reset_name, reset_text(reset_in_ms).encode())]


def reset_text(ms: int) -> str:
    """A wait in OpenAI's header format: "120ms", "1s", "6m0s", "1h2m3s" (seconds rounded up)."""
    if ms < 1000:
        return f"{max(0, ms)}ms"
    seconds = -(-ms // 1000)
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{seconds}s"
    if minutes:
        return f"{minutes}m{seconds}s"
    return f"{seconds}s"


def usd(nano: int) -> str:
    """"$100.02"; small amounts keep the digits that matter ("$0.000150")."""
    value = nano / NANO_PER_USD
    if nano != 0 and abs(value) < 0.01:
        return f"${value:.6f}"
    return f"${value:,.2f}"


def iso_utc(ms: int) -> str:
    """"2026-12-01T00:00:00Z" (milliseconds shown only when there are some)."""
    moment = datetime.fromtimestamp(ms // 1000, timezone.utc)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    return f"{text}.{ms % 1000:03d}Z" if ms % 1000 else text + "Z"


def _listing(names: Iterable[str]) -> str:
    return ", ".join(sorted(names)) or "none"
