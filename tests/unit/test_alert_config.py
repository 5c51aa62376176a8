"""The `alerts` section of the config file: defaults, env-held secrets, and refusals
that name the field."""

from __future__ import annotations

import pytest

from tollway.config import ConfigError, settings_from_dict

HOOK = {"url": "https://hooks.example.com/tollway", "secret": "0123456789abcdef"}


def test_defaults_are_50_80_100_percent_and_forecast_on() -> None:
    alerts = settings_from_dict({}).alerts
    assert (alerts.webhooks, alerts.thresholds, alerts.forecast) == ([], [0.5, 0.8, 1.0], True)


def test_webhook_secret_from_the_environment_and_thresholds_sorted() -> None:
    settings = settings_from_dict(
        {"alerts": {"webhooks": [{**HOOK, "secret": "env.HOOK_SECRET", "format": "slack"}], "thresholds": [1, 0.9]}},
        environ={"HOOK_SECRET": "from-the-environment-123"})
    assert settings.alerts.webhooks[0].secret == "from-the-environment-123"
    assert "from-the-environment" not in repr(settings.alerts)
    assert settings.alerts.thresholds == [0.9, 1.0]


@pytest.mark.parametrize(("alerts", "field"), [
    ({"webhooks": [{**HOOK, "url": "hooks.example.com"}]}, "alerts.webhooks[0].url"),
    ({"webhooks": [{**HOOK, "secret": "short"}]}, "alerts.webhooks[0].secret"),
    ({"webhooks": [{"url": HOOK["url"]}]}, "alerts.webhooks[0].secret"),
    ({"webhooks": [{**HOOK, "events": ["spent"]}]}, "alerts.webhooks[0].events"),
    ({"webhooks": [{**HOOK, "format": "teams"}]}, "alerts.webhooks[0].format"),
    ({"thresholds": [0]}, "alerts.thresholds"),
    ({"thresholds": [1.5]}, "alerts.thresholds"),
    ({"thresholds": [0.5, 0.5]}, "alerts.thresholds"),
    ({"check_interval": "1M"}, "alerts.check_interval"),
    ({"timeout": "soon"}, "alerts.timeout"),
    ({"max_attempts": 0}, "alerts.max_attempts"),
    ({"surprise": True}, "alerts.surprise"),
])
def test_a_bad_alerts_section_is_refused_naming_the_field(alerts: dict, field: str) -> None:
    with pytest.raises(ConfigError) as caught:
        settings_from_dict({"alerts": alerts})
    assert field in str(caught.value)
