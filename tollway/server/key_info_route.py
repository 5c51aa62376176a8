"""`GET /v1/tollway/key`: a virtual key's holder reads, with the key alone, where the key
stands — its limits and those above it that bind it (provider config, team, customer,
provider, model), each with its limit, use, reservations and reset time.

Only what binds the presented key is shown: nothing about other keys, teams or
customers, whatever the request asks (the route takes no parameters). A key that would
be refused by the proxy (unknown, expired, inactive) is refused here the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from tollway.asgi import JSON_HEADERS, Scope, Send, header, respond, respond_error
from tollway.denials import error_body
from tollway.errors import GatewayError, governance_unavailable
from tollway.governance import decisions
from tollway.governance.counters.base import CounterStore, CounterUnavailable
from tollway.governance.decisions import Denial, denial_headers, iso_utc
from tollway.governance.engine import hash_key, identify_key, owner_ids, read_ops
from tollway.governance.inventory import key_checks, limit_view
from tollway.governance.model import NEVER_MS, PolicySnapshot, VirtualKeyPolicy
from tollway.proxy.auth import presented_key
from tollway.proxy.policy_source import PolicySource

PATH = "/v1/tollway/key"
# What a holder sees of each limit (`limit_view` has more, for operators: the limit's row id).
_SHOWN = ("level", "id", "name", "kind", "unit", "limit", "used", "reserved", "remaining", "duration", "last_reset",
          "reset_at", "reset_in_s", "enforcement")


class KeyInfoRoute:
    """Answers a key's holder about that key only."""

    def __init__(self, snapshot: PolicySource, store: CounterStore, clock_ms: Callable[[], int]) -> None:
        self._snapshot = snapshot
        self._store = store
        self._clock_ms = clock_ms

    async def handle(self, scope: Scope, send: Send) -> None:
        anthropic = header(scope, b"anthropic-version") is not None
        value = presented_key(scope)
        try:
            snapshot, now = await self._snapshot.for_key(hash_key(value) if value else None), self._clock_ms()
        except GatewayError as err:  # keys loaded on demand and the lookup cannot be made: 503
            await respond_error(send, err, anthropic)
            return
        # A key is required here even on a gateway that does not enforce keys: the answer is about one.
        found = identify_key(snapshot, hash_key(value), now) if value else decisions.key_required()
        if found is None or isinstance(found, Denial):
            denial = found or decisions.key_required()
            await respond(send, denial.decision.status, error_body(denial, anthropic), JSON_HEADERS + denial_headers(denial))
            return
        try:
            body = await self._describe(snapshot, found, now)
        except CounterUnavailable as exc:
            await respond_error(send, governance_unavailable(str(exc)), anthropic)
            return
        await respond(send, 200, orjson.dumps(body), JSON_HEADERS + [(b"cache-control", b"no-store")])

    async def _describe(self, snapshot: PolicySnapshot, key: VirtualKeyPolicy, now: int) -> dict[str, Any]:
        rows = key_checks(snapshot, key)
        checks = tuple(check for check, _ in rows)
        readings = await self._store.read(read_ops(checks, now)) if checks else ()
        limits = []
        for (check, parent), reading in zip(rows, readings, strict=True):
            view = limit_view(check, parent, reading, now)
            limits.append({name: view.get(name) for name in _SHOWN})
        team_id, customer_id = owner_ids(snapshot, key)
        expires = key.expires_at_ms
        return {
            "object": "tollway.key", "id": key.id, "name": key.name, "team_id": team_id, "customer_id": customer_id,
            "allowed_models": sorted(key.allowed_models), "providers": sorted(key.provider_configs),
            "expires_at": None if expires == NEVER_MS else iso_utc(expires),
            # A value a rotation replaced is answered for until its grace period ends.
            "rotated": key.retired_value, "limits": limits, "at": iso_utc(now),
        }
