"""What became of one request: handed to metrics and the request log."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Protocol

from tollway.asgi import ClientGone, Send, respond_error
from tollway.errors import GatewayError
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
    end_user: str | None = None  # the end user the request named (SPEC §8)
    status: int = 200
    decision: str = "allow"
    denied_scope: Scope | None = None
    would_deny: Denial | None = None  # admitted, but a shadow limit would have denied this
    usage: Usage = field(default=ZERO_USAGE)
    cost_nano: int = 0
    latency_ms: float = 0.0
    stream: bool = False
    error: str | None = None
    tags: tuple[str, ...] = ()  # the request's tags with its key's forced tags


class OutcomeSink(Protocol):
    def record(self, outcome: Outcome) -> None:
        """Must not block: called on the hot path after the response is sent."""
        ...


@asynccontextmanager
async def answered(outcome: Outcome, sink: OutcomeSink, send: Send) -> AsyncIterator[None]:
    """Serve one request inside: a `GatewayError` is answered with its status and recorded,
    a client gone is recorded as 499, and the outcome always reaches ``sink`` with its
    latency (routes whose whole answer is one call share this; the chat pipeline has more
    ways to end)."""
    started = time.perf_counter()
    try:
        yield
    except GatewayError as err:
        outcome.status, outcome.error = err.status, err.message
        await respond_error(send, err)
    except ClientGone:
        outcome.status, outcome.error = 499, "client closed the connection"
    finally:
        outcome.latency_ms = (time.perf_counter() - started) * 1000
        sink.record(outcome)
