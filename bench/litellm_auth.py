"""LiteLLM `custom_auth` hook for the comparison (runs inside LiteLLM's own virtualenv).

LiteLLM's database-backed virtual keys need Prisma engine binaries that cannot be
downloaded offline, so the benchmark's keys and their limits come from this hook instead:
`litellm_keys.json` beside this file maps a key value to the fields of the
`UserAPIKeyAuth` object LiteLLM enforces (`rpm_limit`, `tpm_limit`, `model_max_budget`).
An unknown key is refused. `bench/litellm_side.py` copies this file next to the config.
"""

import json
from pathlib import Path

from fastapi import Request
from litellm.proxy._types import UserAPIKeyAuth

_KEYS = json.loads(Path(__file__).with_name("litellm_keys.json").read_text())


async def user_api_key_auth(request: Request, api_key: str) -> UserAPIKeyAuth:
    limits = _KEYS.get(api_key)
    if limits is None:
        raise Exception("unknown key")  # LiteLLM turns this into a 401
    return UserAPIKeyAuth(api_key=api_key, key_alias=limits.get("alias"), **limits.get("fields", {}))
