"""Naming the entities a report lists: many ids (a spend ranking over thousands of keys,
most deleted) are named from the entity list a page at a time, not one request each,
and deleted ones still come back as deleted."""

from __future__ import annotations

from typing import Any

from tests.api.support import ADMIN_TOKEN, admin, unique
from tests.support.gateway import RunningGateway
from tollway.ui import lookup
from tollway.ui.client import ManagementClient


class CountingClient(ManagementClient):
    """The UI's in-process client to the real management API, counting its requests."""

    def __init__(self, app: Any) -> None:
        super().__init__(app, ADMIN_TOKEN)
        self.requests = 0

    async def request(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        self.requests += 1
        return await super().request(*args, **kwargs)


def test_many_ids_are_named_from_the_list_and_the_deleted_marked(gateway: RunningGateway) -> None:
    prefix = unique("named")
    with admin(gateway) as api:
        ids = [f"{prefix}-{i:02d}" for i in range(lookup.ONE_BY_ONE + 10)]
        for ident in ids:
            assert api.post("/api/governance/teams", json={"id": ident, "name": f"Team {ident}"}).status_code == 201
        for ident in ids[:3]:
            assert api.delete(f"/api/governance/teams/{ident}").status_code == 200
    never = [f"{prefix}-never-{i}" for i in range(5)]
    client = CountingClient(gateway.app)
    names = gateway.call(lookup.names_of(client, lookup.TEAM, ids + never, {ids[5]: "known already"}))
    assert names[ids[5]] == "known already"
    assert [names[ident] for ident in ids[:3] + never] == [None] * 8  # deleted, or never there: not a broken link
    assert all(names[ident] == f"Team {ident}" for ident in ids[3:] if ident != ids[5])
    assert client.requests <= 2  # one page of the list (two at most), not one request per id

    few = CountingClient(gateway.app)
    assert gateway.call(lookup.names_of(few, lookup.TEAM, [ids[4], ids[0]], {})) == {ids[4]: f"Team {ids[4]}", ids[0]: None}
    assert few.requests == 2  # a few are looked up by id
