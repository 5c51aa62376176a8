"""Prometheus metrics, in a registry of their own (no process-global state)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import CONTENT_TYPE_LATEST

from tollway.governance.model import NANO_PER_USD
from tollway.proxy.outcome import Outcome

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class Metrics:
    """Request, token, cost and latency counters; label children are cached because
    `.labels()` costs more than the increment itself."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._requests = Counter("tollway_requests", "Requests by outcome",
                                 ("api", "provider", "model", "status", "decision"), registry=self.registry)
        self._tokens = Counter("tollway_tokens", "Tokens used", ("provider", "model", "type"), registry=self.registry)
        self._cost = Counter("tollway_cost_usd", "Cost charged in USD", ("provider", "model"), registry=self.registry)
        self._latency = Histogram("tollway_request_duration_seconds", "Time from request to last byte",
                                  ("api",), buckets=_LATENCY_BUCKETS, registry=self.registry)
        self._children: dict[tuple, tuple] = {}

    def gauge(self, name: str, documentation: str, read: Callable[[], float]) -> None:
        """A gauge whose value is read at scrape time (queue depths, reservations in flight)."""
        Gauge(name, documentation, registry=self.registry).set_function(read)

    def observe(self, outcome: Outcome) -> None:
        key = (outcome.api, outcome.provider, outcome.model, outcome.status, outcome.decision)
        children = self._children.get(key)
        if children is None:
            children = self._make_children(key)
        requests, prompt, completion, cached, cost, latency = children
        requests.inc()
        latency.observe(outcome.latency_ms / 1000)
        usage = outcome.usage
        if usage.prompt_tokens:
            prompt.inc(usage.prompt_tokens)
        if usage.completion_tokens:
            completion.inc(usage.completion_tokens)
        if usage.cached_tokens:
            cached.inc(usage.cached_tokens)
        if outcome.cost_nano:
            cost.inc(outcome.cost_nano / NANO_PER_USD)

    def _make_children(self, key: tuple) -> tuple:
        api, provider, model, status, decision = key
        if len(self._children) > 10_000:  # unbounded model names must not grow memory forever
            self._children.clear()
        children = (
            self._requests.labels(api, provider, model, str(status), decision),
            self._tokens.labels(provider, model, "prompt"),
            self._tokens.labels(provider, model, "completion"),
            self._tokens.labels(provider, model, "cached"),
            self._cost.labels(provider, model),
            self._latency.labels(api),
        )
        self._children[key] = children
        return children

    def render(self) -> bytes:
        return generate_latest(self.registry)
