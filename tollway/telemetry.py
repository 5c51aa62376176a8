"""Prometheus metrics, in a registry of their own (no process-global state).

Label values come from bounded sets only: a client choosing the model name must not
be able to create a new series per request (each costs memory here and in Prometheus).
Provider and model labels are those the configuration names, plus models an upstream
answered successfully (up to a cap); anything else is counted under ``other``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from tollway.governance.decisions import Denial
from tollway.governance.model import NANO_PER_USD
from tollway.proxy.outcome import Outcome

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
OTHER = "other"  # the label of every provider or model name outside the known sets
MAX_LEARNED_MODELS = 1000


class LabelSets:
    """Which provider and model names become label values.

    ``models`` are the configured names, bare (any provider) or ``"provider/model"``.
    A model an upstream served (`learn`) joins them, up to ``max_learned`` names: a
    real provider refuses a made-up name, so these are real models.
    """

    def __init__(self, providers: Iterable[str] = (), models: Iterable[str] = (),
                 max_learned: int = MAX_LEARNED_MODELS, open_: bool = False) -> None:
        self._providers = frozenset(providers)
        self._bare: set[str] = set()
        self._qualified: set[tuple[str, str]] = set()
        for name in models:
            provider, _, model = name.partition("/")
            if model and provider in self._providers:
                self._qualified.add((provider, model))
            else:
                self._bare.add(name)
        self._room = max_learned
        self._open = open_  # every name is a label (unit tests that build Metrics() bare)

    def provider(self, name: str) -> str:
        return name if self._open or not name or name in self._providers else OTHER

    def model(self, provider: str, model: str) -> str:
        if self._open or not model or model in self._bare or (provider, model) in self._qualified:
            return model
        return OTHER

    def learn(self, provider: str, model: str) -> None:
        """Admit a model an upstream of ``provider`` answered successfully."""
        if self._room > 0 and provider in self._providers and model and (provider, model) not in self._qualified:
            self._qualified.add((provider, model))
            self._room -= 1


class Metrics:
    """Request, token, cost and latency counters; label children are cached because
    `.labels()` costs more than the increment itself."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, labels: LabelSets | None = None) -> None:
        self.labels = labels if labels is not None else LabelSets(open_=True)
        self.registry = CollectorRegistry(auto_describe=True)
        self._requests = Counter("tollway_requests", "Requests by outcome",
                                 ("api", "provider", "model", "status", "decision"), registry=self.registry)
        self._tokens = Counter("tollway_tokens", "Tokens used", ("provider", "model", "type"), registry=self.registry)
        self._cost = Counter("tollway_cost_usd", "Cost charged in USD", ("provider", "model"), registry=self.registry)
        self._latency = Histogram("tollway_request_duration_seconds", "Time from request to last byte",
                                  ("api",), buckets=_LATENCY_BUCKETS, registry=self.registry)
        self._children: dict[tuple, tuple] = {}
        # Shadow limits (SPEC §8): admitted requests a shadow limit would have denied. Both
        # labels are bounded enums: the level (provider … customer) and the decision.
        self._would_deny = Counter("tollway_would_deny", "Requests admitted that a shadow limit would have denied",
                                   ("level", "reason"), registry=self.registry)
        self._would_deny_children: dict[tuple[str, str], Any] = {}

    def gauge(self, name: str, documentation: str, read: Callable[[], float]) -> None:
        """A gauge whose value is read at scrape time (queue depths, reservations in flight)."""
        Gauge(name, documentation, registry=self.registry).set_function(read)

    def observe(self, outcome: Outcome) -> None:
        labels = self.labels
        provider = labels.provider(outcome.provider)
        model = labels.model(provider, outcome.model)
        if model == OTHER and outcome.status < 400 and provider != OTHER:
            labels.learn(provider, outcome.model)
            model = labels.model(provider, outcome.model)
        key = (outcome.api, provider, model, outcome.status, outcome.decision)
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
        if outcome.would_deny is not None:
            self._count_would_deny(outcome.would_deny)

    def _count_would_deny(self, denial: Denial) -> None:
        key = (denial.scope.level.value if denial.scope else "", denial.decision.value)
        child = self._would_deny_children.get(key)
        if child is None:
            child = self._would_deny_children[key] = self._would_deny.labels(*key)
        child.inc()

    def _make_children(self, key: tuple) -> tuple:
        api, provider, model, status, decision = key
        if len(self._children) > 10_000:  # bounded by the label sets; this is a backstop
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
