"""The config file: SPEC §6's example loads; bad entries fail naming file, path and reason."""

from __future__ import annotations

import copy
from decimal import Decimal
from pathlib import Path

import pytest
import yaml

from tollway.config import ConfigError, load_settings, settings_from_dict

SPEC_EXAMPLE = """
database_url: sqlite:///tollway.db
admin_token: env.TOLLWAY_ADMIN_TOKEN
enforce_virtual_keys: false
counters: {backend: memory}
flush_interval: 10s
max_body_bytes: 4194304
providers:
  openai:
    type: openai
    base_url: https://api.openai.com/v1
    keys: [{value: env.OPENAI_API_KEY, weight: 1}]
    budget: {max_limit: 200, reset_duration: 1M, calendar_aligned: true}
    rate_limit: {request_max_limit: 3000, request_reset_duration: 1m}
  anthropic:
    type: anthropic
    keys: [{value: env.ANTHROPIC_API_KEY}]
  local:
    type: openai
    base_url: http://127.0.0.1:9001/v1
    keys: [{value: unused}]
model_aliases:
  fast: local/gpt-4o-mini
pricing:
  local/gpt-4o-mini: {input: 0.15, output: 0.60, cached_input: 0.075}
governance:
  customers:
    - {id: acme, name: Acme, budget: {max_limit: 500, reset_duration: 1M, calendar_aligned: true}}
  teams:
    - {id: search, name: Search, customer_id: acme, budget: {max_limit: 100, reset_duration: 1M}}
  virtual_keys:
    - id: vk-search
      name: search service
      value: env.SEARCH_VK
      team_id: search
      allowed_models: [gpt-4o-mini]
      provider_configs:
        - {provider: local, weight: 1, rate_limit: {request_max_limit: 100, request_reset_duration: 1m}}
      budget: {max_limit: 10, reset_duration: 1d}
      rate_limit: {token_max_limit: 100000, token_reset_duration: 1h,
                   request_max_limit: 60, request_reset_duration: 1m}
  model_configs:
    - {model_name: gpt-4o-mini, provider: local, rate_limit: {request_max_limit: 500, request_reset_duration: 1m}}
    - {model_name: gpt-4o-mini, budget: {max_limit: 50, reset_duration: 1w}}
"""

ENV = {"TOLLWAY_ADMIN_TOKEN": "admin-secret-0123456789", "OPENAI_API_KEY": "sk-real", "ANTHROPIC_API_KEY": "sk-ant",
       "SEARCH_VK": "tw-0123456789abcdefghij"}


def spec_example() -> dict:
    return yaml.safe_load(SPEC_EXAMPLE)


def test_spec_example_loads_with_env_values(tmp_path: Path) -> None:
    path = tmp_path / "tollway.yaml"
    path.write_text(SPEC_EXAMPLE)
    settings = load_settings(path, environ=ENV)
    assert settings.admin_token == "admin-secret-0123456789"
    assert settings.providers["openai"].keys[0].value == "sk-real"
    key = settings.governance.virtual_keys[0]
    assert key.value == ENV["SEARCH_VK"]
    assert key.budget is not None and key.budget.max_limit == Decimal(10)
    assert key.provider_configs[0].weight == 1
    assert settings.governance.model_configs[1].provider is None
    assert settings.providers["openai"].budget.alignment is not None


def test_missing_environment_variable_names_field_and_variable(tmp_path: Path) -> None:
    path = tmp_path / "tollway.yaml"
    path.write_text(SPEC_EXAMPLE)
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ={k: v for k, v in ENV.items() if k != "OPENAI_API_KEY"})
    assert f"{path}: providers.openai.keys[0].value: environment variable OPENAI_API_KEY is not set" in str(caught.value)


def _break(mutate) -> str:
    raw = spec_example()
    mutate(raw)
    with pytest.raises(ConfigError) as caught:
        settings_from_dict(raw, "tollway.yaml", ENV)
    return str(caught.value)


@pytest.mark.parametrize(
    ("mutate", "path", "reason"),
    [
        (lambda r: r["governance"]["virtual_keys"][0]["budget"].update(max_limit=-1),
         "governance.virtual_keys[0].budget.max_limit", "greater than 0"),
        (lambda r: r["governance"]["virtual_keys"][0]["budget"].update(reset_duration="1q"),
         "governance.virtual_keys[0].budget.reset_duration", "invalid duration '1q'"),
        (lambda r: r["governance"]["virtual_keys"][0].update(customer_id="acme"),
         "governance.virtual_keys[0]", "a team or to a customer, not both"),
        (lambda r: r["governance"]["virtual_keys"][0].update(team_id="nope"),
         "governance.virtual_keys[0].team_id", "unknown team 'nope'"),
        (lambda r: r["governance"]["teams"][0].update(name="   "),
         "governance.teams[0].name", "at least 1 character"),
        (lambda r: r["governance"]["model_configs"].append(copy.deepcopy(r["governance"]["model_configs"][1])),
         "governance.model_configs[2].model_name", "'gpt-4o-mini' on any provider is the same model as "
                                                   "governance.model_configs[1] ('gpt-4o-mini')"),
        (lambda r: r["governance"]["model_configs"].append({"model_name": " GPT-4o-Mini\t"}),
         "governance.model_configs[2].model_name", "'GPT-4o-Mini' on any provider is the same model as "
                                                   "governance.model_configs[1] ('gpt-4o-mini'): model names are "
                                                   "matched trimmed, NFKC-normalised and without regard to case"),
        (lambda r: r["governance"]["model_configs"].append({"model_name": "\uff47\uff50\uff54-4o-mini"}),  # fullwidth gpt
         "governance.model_configs[2].model_name", "'gpt-4o-mini' on any provider is the same model as"),
        (lambda r: r["governance"]["model_configs"].append({"model_name": "gpt-4o\u200b-mini"}),
         "governance.model_configs[2].model_name", "invisible or control character U+200B"),
        (lambda r: r["governance"]["virtual_keys"][0]["rate_limit"].pop("token_reset_duration"),
         "governance.virtual_keys[0].rate_limit", "token_max_limit and token_reset_duration go together"),
        (lambda r: r["governance"]["virtual_keys"][0].update(value="sk-not-a-virtual-key-value"),
         "governance.virtual_keys[0].value", "must start with 'tw-'"),
        (lambda r: r["providers"]["openai"].update(kind="openai"),
         "providers.openai.kind", "unknown field"),
        (lambda r: r["model_aliases"].update(slow="nowhere/model"),
         "model_aliases.slow", "configured provider"),
        (lambda r: r["governance"]["customers"][0]["budget"].update(reset_duration="1h"),
         "governance.customers[0].budget", "calendar_aligned needs a d, w, M or Y duration"),
        (lambda r: r.update(max_body_bytes="lots"),
         "max_body_bytes", "valid integer"),
        (lambda r: r.update(request_log_retention="30m"),
         "request_log_retention", "must be at least 1d (got '30m': under a day; months are written 'M'"),
        (lambda r: r.update(request_log_retention="ninety days"),
         "request_log_retention", "invalid duration 'ninety days'"),
    ],
)
def test_invalid_entry_names_file_path_and_reason(mutate, path: str, reason: str) -> None:
    message = _break(mutate)
    line = next((line for line in message.splitlines() if line.startswith(f"tollway.yaml: {path}:")), None)
    assert line is not None, message
    assert reason in line, message


def test_top_level_must_be_a_mapping() -> None:
    with pytest.raises(ConfigError, match="must be a mapping"):
        settings_from_dict(["not", "a", "mapping"], "x.yaml", {})


def test_unreadable_and_unparseable_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the file"):
        load_settings(tmp_path / "missing.yaml", environ={})
    bad = tmp_path / "bad.yaml"
    bad.write_text("providers: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings(bad, environ={})
