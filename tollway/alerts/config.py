"""The `alerts` section of the configuration file, and the webhook shape the management
API accepts too (SPEC.md §8)."""

from __future__ import annotations

from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tollway.governance.durations import parse_duration

THRESHOLD_CROSSED = "threshold_crossed"
FORECAST_EXHAUSTION = "forecast_exhaustion"
EVENTS = (THRESHOLD_CROSSED, FORECAST_EXHAUSTION)
Event = Literal["threshold_crossed", "forecast_exhaustion"]
Format = Literal["json", "slack"]
Secret = Annotated[str, Field(min_length=16, max_length=512)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


def check_webhook_url(value: str) -> str:
    """An absolute http(s) URL with a host; anything else is refused with the reason."""
    parts = urlsplit(value)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{value!r} is not an http:// or https:// URL with a host")
    try:
        parts.port  # noqa: B018 - raises for a port that is not a number
    except ValueError:
        raise ValueError(f"{value!r} has an invalid port") from None
    return value


def check_events(value: list[str] | None) -> list[str] | None:
    """Unique event names; an empty list would silence a webhook, so it is refused."""
    if value is not None:
        if not value:
            raise ValueError(f"name at least one event ({', '.join(EVENTS)}) or leave events out for all")
        if len(set(value)) != len(value):
            raise ValueError("events must not repeat")
    return value


class WebhookConfig(_Strict):
    """One receiver: every event (or those in ``events``), signed with ``secret``."""

    url: Annotated[str, Field(min_length=1, max_length=2048)]
    secret: Secret = Field(repr=False)
    events: list[Event] | None = None
    format: Format = "json"

    _url = field_validator("url")(check_webhook_url)
    _events = field_validator("events")(check_events)


def _positive_duration(value: str) -> str:
    if not parse_duration(value).fixed_ms:
        raise ValueError(f"{value!r} must be a fixed duration such as 5s or 1m")
    return value


class AlertsConfig(_Strict):
    webhooks: list[WebhookConfig] = []
    thresholds: list[Annotated[float, Field(gt=0, le=1)]] = [0.5, 0.8, 1.0]
    forecast: bool = True
    check_interval: str = "5s"  # how often every limit's usage is read
    timeout: str = "5s"  # one delivery attempt, connect to last byte
    max_attempts: Annotated[int, Field(ge=1, le=20)] = 5
    retry_backoff: Annotated[float, Field(gt=0, le=3600)] = 1.0  # seconds before the first retry; doubles
    max_backoff: Annotated[float, Field(gt=0, le=86_400)] = 300.0
    concurrency: Annotated[int, Field(ge=1, le=256)] = 8  # deliveries in flight at once
    queue_size: Annotated[int, Field(ge=1, le=1_000_000)] = 10_000  # deliveries waiting; beyond: dropped, logged

    _durations = field_validator("check_interval", "timeout")(_positive_duration)

    @field_validator("thresholds")
    @classmethod
    def _sorted_unique(cls, value: list[float]) -> list[float]:
        if len(set(value)) != len(value):
            raise ValueError("thresholds must not repeat")
        return sorted(value)
