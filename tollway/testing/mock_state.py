"""State of one mock upstream: its settings, queued faults, recorded requests and counters.

Everything lives on a `MockState` object owned by the aiohttp application, so two mocks
in one process never share anything.
"""

from __future__ import annotations

import dataclasses
import itertools
import random
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

REQUEST_LOG_SIZE = 1000
"""How many recent requests `GET /_mock/requests` keeps."""

DropMode = Literal["before_response", "mid_stream"]
_DROP_MODES: frozenset[str] = frozenset({"before_response", "mid_stream"})


class MockConfigError(ValueError):
    """A control-API body that cannot be applied (unknown field, wrong type, bad value)."""


@dataclass
class MockSettings:
    """Defaults for every response; tests change them at runtime through `/_mock/settings`."""

    latency_ms: float = 0.0
    """Delay before the response headers."""
    completion_tokens: int = 16
    """Tokens generated when the request's max_tokens does not cap it lower."""
    cached_tokens: int = 0
    """Prompt tokens reported as read from cache (never more than the prompt)."""
    chunk_delay_ms: float = 0.0
    """Delay between two stream events."""
    embedding_dims: int = 8
    """Length of embedding vectors when the request gives no `dimensions`."""
    stream_split_max_bytes: int = 0
    """0: each stream event is one write. N > 0: the stream's bytes are written in pieces of
    1 to N bytes cut at random offsets, ignoring event boundaries (as proxies and TCP may)."""
    stream_jitter_ms: float = 0.0
    """With split streams: a random pause of 0 to this many ms before each piece."""
    record_streams: bool = False
    """Keep the exact bytes of each stream sent, under `"stream"` in the request's record."""

    def to_dict(self) -> dict[str, Any]:
        """The settings as a JSON-ready dict."""
        return dataclasses.asdict(self)

    def merge(self, changes: dict[str, Any]) -> None:
        """Apply `changes` (field name → value) after checking every one of them."""
        checked = {name: _check_setting(name, value) for name, value in changes.items()}
        for name, value in checked.items():
            setattr(self, name, value)


_INT_SETTINGS = frozenset({"completion_tokens", "cached_tokens", "embedding_dims", "stream_split_max_bytes"})
_FLOAT_SETTINGS = frozenset({"latency_ms", "chunk_delay_ms", "stream_jitter_ms"})
_BOOL_SETTINGS = frozenset({"record_streams"})


def _check_setting(name: str, value: Any) -> float | int | bool:
    if name in _BOOL_SETTINGS:
        if not isinstance(value, bool):
            raise MockConfigError(f"setting {name!r} must be true or false")
        return value
    if name not in _INT_SETTINGS and name not in _FLOAT_SETTINGS:
        raise MockConfigError(f"unknown setting {name!r}")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise MockConfigError(f"setting {name!r} must be a number")
    if value < 0:
        raise MockConfigError(f"setting {name!r} must not be negative")
    if name in _INT_SETTINGS:
        if int(value) != value:
            raise MockConfigError(f"setting {name!r} must be an integer")
        return int(value)
    return float(value)


@dataclass(slots=True)
class Fault:
    """One queued misbehaviour; each matching request consumes one of its `count`."""

    status: int | None = None
    """Answer with this HTTP status (and `body`, or the API's error shape) instead of a result."""
    body: Any = None
    """Response body for `status`: JSON for dicts and lists, text for strings."""
    delay_ms: float = 0.0
    """Extra wait before anything is sent; a large value makes a hanging upstream."""
    drop: DropMode | None = None
    """`before_response`: close the connection with no answer; `mid_stream`: abort after `after_chunks`."""
    after_chunks: int = 0
    """Stream events sent before a `mid_stream` drop."""
    count: int = 1
    path: str | None = None
    """Only requests whose path contains this substring match."""
    retry_after: float | None = None
    """Value of a `retry-after` header on the error response."""

    def matches(self, path: str) -> bool:
        """Whether a request to `path` consumes this fault."""
        return self.path is None or self.path in path

    def to_dict(self) -> dict[str, Any]:
        """The fault as a JSON-ready dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Any) -> Fault:
        """Build a fault from a `/_mock/faults` body, rejecting unknown fields and bad values."""
        if not isinstance(data, dict):
            raise MockConfigError("a fault must be a JSON object")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise MockConfigError(f"unknown fault fields: {sorted(unknown)}")
        fault = cls(**data)
        fault._check()
        return fault

    def _check(self) -> None:
        if self.status is not None and (not _is_int(self.status) or not 100 <= self.status <= 599):
            raise MockConfigError("status must be an HTTP status code")
        if self.drop is not None and self.drop not in _DROP_MODES:
            raise MockConfigError(f"drop must be one of {sorted(_DROP_MODES)} or null")
        if not _is_int(self.count) or self.count < 1:
            raise MockConfigError("count must be a positive integer")
        if not _is_int(self.after_chunks) or self.after_chunks < 0:
            raise MockConfigError("after_chunks must be a non-negative integer")
        if not _is_number(self.delay_ms) or self.delay_ms < 0:
            raise MockConfigError("delay_ms must be a non-negative number")
        if self.retry_after is not None and (not _is_number(self.retry_after) or self.retry_after < 0):
            raise MockConfigError("retry_after must be a non-negative number")
        if self.path is not None and not isinstance(self.path, str):
            raise MockConfigError("path must be a string")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@dataclass(slots=True)
class MockStats:
    """Counters behind `GET /_mock/stats` (control requests are not counted)."""

    requests: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    """The most requests in flight at once since the last reset (what a concurrency limit caps)."""
    requests_cancelled: int = 0
    """Requests whose client went away before the answer was complete (streams included)."""
    streams_started: int = 0
    streams_completed: int = 0
    streams_cancelled: int = 0
    """Streams whose client went away mid-stream (a write hit a closed transport, or cancellation)."""
    faults_applied: int = 0


class ConnectionCounter(Protocol):
    """Anything that can say how many TCP connections are open (an aiohttp `web.Server`)."""

    @property
    def connections(self) -> list[Any]: ...


@dataclass
class MockState:
    """All mutable state of one mock upstream."""

    settings: MockSettings
    defaults: MockSettings = field(init=False)
    faults: list[Fault] = field(default_factory=list)
    requests: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=REQUEST_LOG_SIZE))
    stats: MockStats = field(default_factory=MockStats)
    server: ConnectionCounter | None = None
    """Set by whoever runs the app, so stats can report open connections."""
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    rng: random.Random = field(default_factory=random.Random)
    """Where split streams take their cut offsets and pauses from."""

    def __post_init__(self) -> None:
        self.defaults = dataclasses.replace(self.settings)

    def next_id(self) -> int:
        """A fresh number for response ids (deterministic from the last reset)."""
        return next(self._ids)

    def take_fault(self, path: str) -> Fault | None:
        """Consume one count of the first queued fault that matches `path`."""
        for index, fault in enumerate(self.faults):
            if fault.matches(path):
                fault.count -= 1
                if fault.count == 0:
                    del self.faults[index]
                self.stats.faults_applied += 1
                return fault
        return None

    def reset(self) -> None:
        """Forget faults, recorded requests and counters; restore the settings given at start."""
        self.faults.clear()
        self.requests.clear()
        # Zero the counters in place: handlers still running hold this object.
        for counter in dataclasses.fields(MockStats):
            if counter.name != "in_flight":
                setattr(self.stats, counter.name, 0)
        self.stats.max_in_flight = self.stats.in_flight
        for name, value in dataclasses.asdict(self.defaults).items():
            setattr(self.settings, name, value)
        self._ids = itertools.count(1)

    def stats_dict(self) -> dict[str, Any]:
        """The counters plus the number of open connections (null when unknown)."""
        data = dataclasses.asdict(self.stats)
        data["open_connections"] = len(self.server.connections) if self.server is not None else None
        return data
