"""`POST /api/governance/virtual-keys/{id}/rotate`: a new value for a key, shown once.

The replaced value keeps working for the grace period asked for (none by default: a
rotation is often prompted by a leak), then gets 401 ``virtual_key_expired``. At most
two values work at once: rotating again during a grace period replaces the value in
grace with the one just replaced (which gets the new grace period), so the oldest stops
at once. The key keeps its id, limits, usage and expiry; every node applies the rotation
from the change log like any other change to the key.
"""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Body

from tollway.api.context import ApiWriter, RuntimeDep
from tollway.api.responses import VirtualKeyEnvelope
from tollway.api.schemas import KeyRotation, grace_period_ms
from tollway.api.virtual_keys import KEYS, KIND, key_view
from tollway.config.schema import VK_PREFIX
from tollway.governance.engine import hash_key
from tollway.store.bootstrap import VALUE_PREFIX_LENGTH
from tollway.store.tables import VirtualKey

router = APIRouter(prefix="/api/governance/virtual-keys", tags=["virtual keys"])


@router.post("/{key_id}/rotate", response_model=VirtualKeyEnvelope, summary="Rotate a virtual key's value")
async def rotate_key(key_id: str, runtime: RuntimeDep, body: KeyRotation | None = Body(default=None)) -> dict[str, Any]:
    """Issue a new value (in the response only: it is not shown again). The old value works
    until ``grace_period`` ends; a value still in an earlier rotation's grace stops now."""
    grace_ms = grace_period_ms(body.grace_period if body is not None else None)
    value = VK_PREFIX + secrets.token_urlsafe(32)

    def write(writer: ApiWriter) -> VirtualKey:
        row = KEYS.load_to_change(writer.session, key_id)  # 409 for a key the config file manages
        grace_end = writer.now + timedelta(milliseconds=grace_ms) if grace_ms else None
        values = {"value_hash": hash_key(value), "value_prefix": value[:VALUE_PREFIX_LENGTH],
                  "previous_value_hash": row.value_hash if grace_end is not None else None,
                  "previous_value_expires_at": grace_end}
        row, diff = writer.upsert(row, VirtualKey, {}, values)
        writer.record(row, KIND, key_id, diff)
        return row

    shown = await KEYS.changed(runtime, "", write, lambda row, live: key_view(row, live, value))
    view = shown[KIND]
    until = view["previous_value_expires_at"]
    shown["message"] = ("virtual key rotated; store its new value now: it is not shown again; "
                        + (f"the previous value works until {until}" if until else "the previous value no longer works"))
    return shown


__all__ = ["router"]
