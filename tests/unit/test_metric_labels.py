"""Metric label values come from bounded sets: configured names, learned names up to a
cap, and `other` for everything else."""

from __future__ import annotations

from tollway.config import settings_from_dict
from tollway.proxy.outcome import Outcome
from tollway.server.metric_labels import label_sets
from tollway.telemetry import OTHER, LabelSets, Metrics


def _settings():
    return settings_from_dict({
        "providers": {"openai": {"type": "openai", "keys": [{"value": "sk", "models": ["gpt-4o"]}]},
                      "azure": {"type": "azure", "base_url": "http://x", "api_version": "1", "keys": [{"value": "k"}],
                                "deployments": {"gpt-4o-mini": "mini"}}},
        "model_aliases": {"fast": "openai/gpt-4.1-mini"},
        "pricing": {"openai/o3": {"input": 1, "output": 2}},
        "governance": {"virtual_keys": [{"id": "k", "name": "k", "allowed_models": ["claude-x"]}],
                       "model_configs": [{"model_name": "gpt-5", "provider": "openai",
                                          "rate_limit": {"request_max_limit": 1, "request_reset_duration": "1m"}}]},
    })


def test_configured_names_are_labels_and_others_are_other() -> None:
    labels = label_sets(_settings())
    for provider, model in [("openai", "gpt-4o"), ("azure", "gpt-4o-mini"), ("openai", "gpt-4.1-mini"),
                            ("openai", "o3"), ("openai", "claude-x"), ("openai", "gpt-5"), ("openai", "fast")]:
        assert labels.model(provider, model) == model
    assert labels.model("azure", "o3") == OTHER  # priced for openai only
    assert labels.model("openai", "made-up") == OTHER
    assert labels.provider("nope") == OTHER
    assert labels.provider("openai") == "openai"


def test_models_an_upstream_served_are_learned_up_to_a_cap() -> None:
    labels = LabelSets(["openai"], [], max_learned=3)
    for i in range(10):
        labels.learn("openai", f"m{i}")
    assert [labels.model("openai", f"m{i}") for i in range(5)] == ["m0", "m1", "m2", OTHER, OTHER]
    labels.learn("elsewhere", "z")
    assert labels.model("elsewhere", "z") == OTHER


def test_metrics_learn_only_from_successful_answers() -> None:
    metrics = Metrics(LabelSets(["openai"], [], max_learned=100))
    for i in range(50):
        metrics.observe(Outcome(f"r{i}", "chat", 0, "openai", f"made-up-{i}", status=401, decision="virtual_key_required"))
    metrics.observe(Outcome("ok", "chat", 0, "openai", "real-model", status=200))
    text = metrics.render().decode()
    assert "made-up" not in text
    assert 'model="other"' in text and 'model="real-model"' in text
