"""The SPEC §6 example configuration, with real values in place of the env refs."""

from __future__ import annotations

import copy
import hashlib
from typing import Any

from tollway.config.loader import settings_from_dict
from tollway.config.schema import Settings

SEARCH_VK = "tw-search-0123456789abcdefghij"

_EXAMPLE: dict[str, Any] = {
    "database_url": "sqlite:///tollway.db",
    "admin_token": "admin-secret-0123456789",
    "enforce_virtual_keys": False,
    "counters": {"backend": "memory"},
    "flush_interval": "10s",
    "max_body_bytes": 4194304,
    "providers": {
        "openai": {
            "type": "openai",
            "base_url": "https://api.openai.com/v1",
            "keys": [{"value": "sk-openai-secret", "weight": 1}],
            "budget": {"max_limit": 200, "reset_duration": "1M", "calendar_aligned": True},
            "rate_limit": {"request_max_limit": 3000, "request_reset_duration": "1m"},
        },
        "anthropic": {"type": "anthropic", "keys": [{"value": "sk-ant-secret"}]},
        "local": {"type": "openai", "base_url": "http://127.0.0.1:9001/v1", "keys": [{"value": "unused"}]},
    },
    "model_aliases": {"fast": "local/gpt-4o-mini"},
    "pricing": {"local/gpt-4o-mini": {"input": 0.15, "output": 0.60, "cached_input": 0.075}},
    "governance": {
        "customers": [
            {"id": "acme", "name": "Acme", "budget": {"max_limit": 500, "reset_duration": "1M", "calendar_aligned": True}}
        ],
        "teams": [
            {"id": "search", "name": "Search", "customer_id": "acme", "budget": {"max_limit": 100, "reset_duration": "1M"}}
        ],
        "virtual_keys": [
            {
                "id": "vk-search",
                "name": "search service",
                "value": SEARCH_VK,
                "team_id": "search",
                "allowed_models": ["gpt-4o-mini"],
                "provider_configs": [
                    {"provider": "local", "weight": 1,
                     "rate_limit": {"request_max_limit": 100, "request_reset_duration": "1m"}}
                ],
                "budget": {"max_limit": 10, "reset_duration": "1d"},
                "rate_limit": {"token_max_limit": 100000, "token_reset_duration": "1h",
                               "request_max_limit": 60, "request_reset_duration": "1m"},
            }
        ],
        "model_configs": [
            {"model_name": "gpt-4o-mini", "provider": "local",
             "rate_limit": {"request_max_limit": 500, "request_reset_duration": "1m"}},
            {"model_name": "gpt-4o-mini", "budget": {"max_limit": 50, "reset_duration": "1w"}},
        ],
    },
}


def example_raw() -> dict[str, Any]:
    """A deep copy of the example, for tests to change."""
    return copy.deepcopy(_EXAMPLE)


def settings(raw: dict[str, Any] | None = None) -> Settings:
    return settings_from_dict(example_raw() if raw is None else raw, environ={})


def sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()
