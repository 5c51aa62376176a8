"""What every configuration section shares: the strict base model, bounded strings and
numbers, and the validators of durations."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from tollway.governance.durations import parse_duration

NonEmpty = Annotated[str, Field(min_length=1, max_length=256)]
PositiveInt = Annotated[int, Field(gt=0, le=10**15)]


class StrictModel(BaseModel):
    """A configuration section: unknown fields are refused (a misspelt setting is an error,
    not a default), strings are trimmed."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


def check_duration(value: str | None) -> str | None:
    if value is not None:
        parse_duration(value)
    return value


def fixed_duration(value: str) -> str:
    """A duration in seconds, minutes, hours, days or weeks (no calendar months)."""
    if parse_duration(value).fixed_ms is None:
        raise ValueError(f"must be a fixed duration such as '10s', '5m' or '1h' (got {value!r})")
    return value


def seconds_up_to_hour(value: str) -> str:
    fixed = parse_duration(fixed_duration(value)).fixed_ms
    if fixed is None or fixed > 3_600_000:
        raise ValueError(f"must be from 1s to 1h (got {value!r})")
    return value


def idle_duration(value: str) -> str:
    fixed = parse_duration(fixed_duration(value)).fixed_ms
    if fixed is None or not 60_000 <= fixed <= 30 * 86_400_000:
        raise ValueError(f"must be from 1m to 30d (got {value!r})")
    return value


def duration_s(value: str) -> float:
    """Seconds of a fixed duration (validated by the models above)."""
    fixed = parse_duration(value).fixed_ms
    assert fixed is not None
    return fixed / 1000


def no_blank(value: str | None) -> str | None:
    if value is not None and not value.strip():
        raise ValueError("must not be empty or whitespace")
    return value
