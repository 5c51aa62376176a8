"""What became of one request: handed to metrics and the request log."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from tollway.governance.decisions import Denial
from tollway.governance.model import Scope
from tollway.usage import ZERO_USAGE, Usage


@dataclass(slots=True)
class Outcome:
    request_id: str
    api: str
    at_ms: int
    provider: str = ""
    model: str = ""
    key_id: str | None = None
    team_id: str | None = None
    customer_id: str | None = None
    status: int = 200
    decision: str = "allow"
    denied_scope: Scope | None = None
    would_deny: Denial | None = None  # admitted, but a shadow limit would have denied this
    usage: Usage = field(default=ZERO_USAGE)
    cost_nano: int = 0
    latency_ms: float = 0.0
    stream: bool = False
    error: str | None = None


class OutcomeSink(Protocol):
    def record(self, outcome: Outcome) -> None:
        """Must not block: called on the hot path after the response is sent."""
        ...
