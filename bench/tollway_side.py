"""Tollway's side of the comparison: its configuration for a `Limits`, and its process."""

from __future__ import annotations

import secrets
from pathlib import Path

import yaml
from gateways import MAX_TOKENS, MODEL, PRICE_INPUT, PRICE_OUTPUT, ROOT, TOLLWAY_PYTHON, Limits, Service

PROVIDER = "mock"
ROUTED_MODEL = f"{PROVIDER}/{MODEL}"


def new_key() -> str:
    return "tw-bench-" + secrets.token_urlsafe(24)


def _rate_limit(requests: int | None, tokens: int | None) -> dict | None:
    limit: dict = {}
    if requests is not None:
        limit |= {"request_max_limit": requests, "request_reset_duration": "1m"}
    if tokens is not None:
        limit |= {"token_max_limit": tokens, "token_reset_duration": "1m"}
    return limit or None


def _budget(usd: object) -> dict | None:
    return None if usd is None else {"max_limit": str(usd), "reset_duration": "1d"}


def tollway_config(limits: Limits, mock_port: int, database: Path, key: str) -> dict:
    provider: dict = {"type": "openai", "base_url": f"http://127.0.0.1:{mock_port}/v1", "keys": [{"value": "sk-mock"}]}
    if (budget := _budget(limits.provider_budget_usd)) is not None:
        provider["budget"] = budget
    virtual_key: dict = {"id": "bench", "name": "bench key", "value": key}
    if (rate := _rate_limit(limits.key_rpm, limits.key_tpm)) is not None:
        virtual_key["rate_limit"] = rate
    if (budget := _budget(limits.key_budget_usd)) is not None:
        virtual_key["budget"] = budget
    governance: dict = {"virtual_keys": [virtual_key]}
    if (rate := _rate_limit(limits.model_rpm, limits.model_tpm)) is not None:
        governance["model_configs"] = [{"model_name": MODEL, "provider": PROVIDER, "rate_limit": rate}]
    return {
        "database_url": f"sqlite:///{database}",
        "log_level": "warning",
        "enforce_virtual_keys": True,
        "providers": {PROVIDER: provider},
        "pricing": {ROUTED_MODEL: {"input": str(PRICE_INPUT), "output": str(PRICE_OUTPUT)}},
        # The reservation's completion estimate is the request's max_tokens (set on every request).
        "estimate": {"default_completion_tokens": MAX_TOKENS},
        "governance": governance,
    }


def tollway_service(limits: Limits, mock_port: int, port: int, workdir: Path, workers: int = 1,
                    tag: str = "") -> tuple[Service, str]:
    """A Tollway process for `limits` (not started) and the virtual key to send."""
    workdir.mkdir(parents=True, exist_ok=True)
    key = new_key()
    name = f"tollway{tag}-{port}"
    config = workdir / f"{name}.yaml"
    config.write_text(yaml.safe_dump(tollway_config(limits, mock_port, workdir / f"{name}.db", key), sort_keys=False))
    command = [str(TOLLWAY_PYTHON), "-m", "tollway", "serve", "--config", str(config), "--port", str(port)]
    if workers > 1:
        command += ["--workers", str(workers)]
    service = Service(name, command, f"http://127.0.0.1:{port}", "/health", log=workdir / f"{name}.log",
                      cwd=ROOT, env={"PYTHONUNBUFFERED": "1"})
    return service, key


def tollway_spend_usd(metrics_text: str) -> float:
    """Sum of `tollway_cost_usd_total` samples in a /metrics page."""
    total = 0.0
    for line in metrics_text.splitlines():
        if line.startswith("tollway_cost_usd_total"):
            total += float(line.rsplit(" ", 1)[1])
    return total
