"""Helpers of the scoped admin token tests: a world of teams, customers and keys to be
inside or outside a manager's scope, and tokens of every role."""

from __future__ import annotations

from typing import Any

import httpx2

from tests.api.support import admin, unique
from tests.support.gateway import RunningGateway

# team-a: a team of no customer; cust-a: a customer with team team-ca; the -b ones are outside.
WORLD: list[tuple[str, str, dict[str, Any]]] = [
    ("customers", "cust-a", {"name": "Customer A", "budget": {"max_limit": 100, "reset_duration": "1M"},
                             "rate_limit": {"request_max_limit": 1000, "request_reset_duration": "1h"}}),
    ("customers", "cust-b", {"name": "Customer B"}),
    ("teams", "team-a", {"name": "Team A", "budget": {"max_limit": 50, "reset_duration": "1M"}}),
    ("teams", "team-b", {"name": "Team B"}),
    ("teams", "team-ca", {"name": "Team of A", "customer_id": "cust-a"}),
    ("virtual-keys", "vk-ta", {"name": "key of team A", "team_id": "team-a"}),
    ("virtual-keys", "vk-tb", {"name": "key of team B", "team_id": "team-b"}),
    ("virtual-keys", "vk-ca", {"name": "key of cust A's team", "team_id": "team-ca"}),
    ("virtual-keys", "vk-c", {"name": "key of cust A", "customer_id": "cust-a"}),
    ("virtual-keys", "vk-cb", {"name": "key of cust B", "customer_id": "cust-b"}),
]
SCOPES = {"team_manager": {"team_id": "team-a"}, "customer_manager": {"customer_id": "cust-a"}}
ROLE_OF = {"admin": "admin", "viewer": "viewer", "usage_reader": "usage_reader",
           "team_manager": "manager", "customer_manager": "manager"}


def build_world(gateway: RunningGateway) -> None:
    with admin(gateway) as api:
        for kind, ident, body in WORLD:
            answer = api.post(f"/api/governance/{kind}", json={"id": ident, **body})
            assert answer.status_code == 201, answer.text


def create_token(gateway: RunningGateway, who: str, name: str | None = None) -> dict[str, Any]:
    """A new token for ``who`` (a key of `ROLE_OF`), as the create call answers it."""
    body: dict[str, Any] = {"name": name or unique(who), "role": ROLE_OF[who]}
    if who in SCOPES:
        body["scope"] = SCOPES[who]
    with admin(gateway) as api:
        answer = api.post("/api/admin-tokens", json=body)
    assert answer.status_code == 201, answer.text
    return answer.json()["admin_token"]  # type: ignore[no-any-return]


def client_of(gateway: RunningGateway, token: dict[str, Any]) -> httpx2.Client:
    return admin(gateway, token["value"])
