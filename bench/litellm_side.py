"""LiteLLM's side of the comparison: its own virtualenv, its configuration for a `Limits`,
and its process.

LiteLLM is installed from PyPI (`litellm[proxy]`) into `bench/.cache/litellm-venv`, never
into Tollway's environment; matplotlib goes into the same cache venv for the chart. The
limits that work offline (no database, so no Prisma-backed virtual keys):

- model level: the deployment's `rpm`/`tpm` with `router_settings.optional_pre_call_checks:
  [enforce_model_rate_limits]`;
- provider level: `router_settings.provider_budget_config`;
- key level: the `custom_auth` hook (`bench/litellm_auth.py`) returns the key with
  `rpm_limit`/`tpm_limit`, and `model_max_budget` for its budget
  (`litellm_settings.enable_post_custom_auth_checks: true` makes LiteLLM check it).
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import yaml
from gateways import MODEL, PRICE_INPUT, PRICE_OUTPUT, Limits, Service

HERE = Path(__file__).resolve().parent
CACHE = HERE / ".cache"
VENV = CACHE / "litellm-venv"
PYTHON = VENV / "bin" / "python"
PACKAGES = ["litellm[proxy]", "matplotlib"]


def ensure_venv(spec: str = "litellm[proxy]", quiet: bool = True) -> str:
    """Create the cache venv and install LiteLLM's proxy and matplotlib once; return LiteLLM's version."""
    if not _importable():
        CACHE.mkdir(parents=True, exist_ok=True)
        if not PYTHON.exists():
            print(f"creating {VENV} …", flush=True)
            subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        print(f"installing {spec} and matplotlib into {VENV} (once; about a minute) …", flush=True)
        subprocess.run([str(PYTHON), "-m", "pip", "install", *(["-q"] if quiet else []), spec, "matplotlib"],
                       check=True)
    return subprocess.run([str(PYTHON), "-c", "import importlib.metadata as m; print(m.version('litellm'))"],
                          check=True, capture_output=True, text=True).stdout.strip()


def _importable() -> bool:
    if not PYTHON.exists():
        return False
    probe = "import litellm.proxy.proxy_server, matplotlib, uvicorn, fastapi"
    return subprocess.run([str(PYTHON), "-c", probe], capture_output=True).returncode == 0


def new_key() -> str:
    return "sk-bench-" + secrets.token_urlsafe(24)


def litellm_config(limits: Limits, mock_port: int, master_key: str) -> dict:
    params: dict = {
        "model": f"openai/{MODEL}",
        "api_base": f"http://127.0.0.1:{mock_port}/v1",
        "api_key": "sk-mock",
        "input_cost_per_token": float(PRICE_INPUT) / 1e6,
        "output_cost_per_token": float(PRICE_OUTPUT) / 1e6,
    }
    if limits.model_rpm is not None:
        params["rpm"] = limits.model_rpm
    if limits.model_tpm is not None:
        params["tpm"] = limits.model_tpm
    router: dict = {"optional_pre_call_checks": ["enforce_model_rate_limits"]}
    if limits.provider_budget_usd is not None:
        router["provider_budget_config"] = {"openai": {"budget_limit": float(limits.provider_budget_usd),
                                                       "time_period": "1d"}}
    return {
        "model_list": [{"model_name": MODEL, "litellm_params": params}],
        "router_settings": router,
        "litellm_settings": {"enable_post_custom_auth_checks": True, "telemetry": False},
        "general_settings": {"master_key": master_key, "custom_auth": "litellm_auth.user_api_key_auth"},
    }


def key_fields(limits: Limits) -> dict:
    fields: dict = {}
    if limits.key_rpm is not None:
        fields["rpm_limit"] = limits.key_rpm
    if limits.key_tpm is not None:
        fields["tpm_limit"] = limits.key_tpm
    if limits.key_budget_usd is not None:
        fields["model_max_budget"] = {MODEL: {"max_budget": float(limits.key_budget_usd), "budget_duration": "1d"}}
    return fields


def litellm_service(limits: Limits, mock_port: int, port: int, workdir: Path, workers: int = 1,
                    tag: str = "") -> tuple[Service, str]:
    """A LiteLLM proxy process for `limits` (not started) and the key to send."""
    name = f"litellm{tag}-{port}"
    directory = workdir / name
    directory.mkdir(parents=True, exist_ok=True)
    key = new_key()
    master_key = "sk-master-" + secrets.token_urlsafe(24)
    (directory / "config.yaml").write_text(yaml.safe_dump(litellm_config(limits, mock_port, master_key), sort_keys=False))
    shutil.copy(HERE / "litellm_auth.py", directory / "litellm_auth.py")
    (directory / "litellm_keys.json").write_text(json.dumps({key: {"alias": "bench", "fields": key_fields(limits)}}))
    command = [str(VENV / "bin" / "litellm"), "--config", str(directory / "config.yaml"),
               "--host", "127.0.0.1", "--port", str(port)]
    if workers > 1:
        command += ["--num_workers", str(workers)]
    env = {
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # offline: the packaged price map, no download
        "LITELLM_LOG": "ERROR",                   # production logging (no access log line per request)
        "PYTHONUNBUFFERED": "1",
    }
    service = Service(name, command, f"http://127.0.0.1:{port}", "/health/liveliness", env=env,
                      cwd=directory, log=directory / "litellm.log")
    return service, key


def litellm_spend_usd(responses: list[tuple]) -> float:
    """Sum of LiteLLM's own `x-litellm-response-cost` header over successful responses."""
    total = 0.0
    for status, headers, _body, *_rest in responses:
        if status == 200:
            total += float({k.lower(): v for k, v in headers.items()}.get("x-litellm-response-cost", 0) or 0)
    return total
