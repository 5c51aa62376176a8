"""`POST /api/governance/virtual-keys/bulk`: up to 10,000 new virtual keys in one call,
for migrations. All or nothing: every entry is checked (shape, duplicates inside the
call and against the store, owners, providers) before the first row is written, in the
same locked transaction as the writes; one bad entry answers 4xx naming its index and
field (``virtual_keys[3].team_id``) and writes nothing. The answer carries each key's
value, the only time it is shown.

Status codes follow the rest of the API: 422 for an invalid or unknown field, 409 for an
id or value that is taken (by the store or by another entry of the call). The rows are
built by the ORM on the event loop of the node that serves the call (seconds for 10,000
keys), so run large imports against a node that takes no traffic, or in smaller calls;
the other nodes apply the result from the change log in one go.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Sequence
from typing import Annotated, Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from tollway.api.context import ApiWriter, RuntimeDep, change
from tollway.api.errors import ApiError, invalid
from tollway.api.limits import LiveUsage
from tollway.api.owners import check_provider_configs
from tollway.api.responses import Message, VirtualKeyView
from tollway.api.schemas import VirtualKeyCreate
from tollway.api.virtual_keys import add_key, key_view
from tollway.config.schema import VK_PREFIX
from tollway.governance.engine import hash_key
from tollway.store.entities import EntityError
from tollway.store.tables import Customer, Team, VirtualKey, new_id

MAX_KEYS = 10_000
_IDS_PER_QUERY = 500

router = APIRouter(prefix="/api/governance/virtual-keys", tags=["virtual keys"])


class VirtualKeyBulkCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    virtual_keys: Annotated[list[VirtualKeyCreate], Field(min_length=1, max_length=MAX_KEYS)]


class VirtualKeyBulkList(Message):
    virtual_keys: list[VirtualKeyView]
    count: int


class _Entry:
    """One key of the call with its id and value settled (generated when omitted)."""

    __slots__ = ("body", "digest", "key_id", "value")

    def __init__(self, body: VirtualKeyCreate) -> None:
        self.body = body
        self.key_id = body.id or "vk-" + new_id()
        self.value = body.value or VK_PREFIX + secrets.token_urlsafe(32)
        self.digest = hash_key(self.value)


@router.post("/bulk", status_code=201, response_model=VirtualKeyBulkList, summary="Create many virtual keys at once")
async def create_keys(body: VirtualKeyBulkCreate, runtime: RuntimeDep) -> dict[str, Any]:
    """All or nothing; the answer lists the keys in the order given, with their values
    (shown this once)."""
    entries = [_Entry(key) for key in body.virtual_keys]
    live = LiveUsage()

    def write(writer: ApiWriter) -> list[VirtualKey]:
        check_entries(writer.session, writer.runtime.settings, entries)
        rows = []
        for index, entry in enumerate(entries):
            try:
                rows.append(add_key(writer, entry.body, entry.key_id, entry.value))
            except EntityError as exc:  # a limit the store cannot hold: name the entry
                field = f"virtual_keys[{index}].{exc.field}" if exc.field else f"virtual_keys[{index}]"
                raise invalid(field, exc.message) from exc
        return rows

    def present(rows: list[VirtualKey]) -> list[dict[str, Any]]:
        return [key_view(row, live, entry.value) for row, entry in zip(rows, entries, strict=True)]

    views = await change(runtime, write, present)
    await live.fill(runtime.store, runtime.clock_ms())
    return {"message": f"{len(views)} virtual keys created; store their values now: they are not shown again",
            "virtual_keys": views, "count": len(views)}


def check_entries(session: Session, settings: Any, entries: Sequence[_Entry]) -> None:
    """Raise the first problem of any entry, naming its index and field."""
    _no_repeats(entries)
    taken_ids = _existing(session, VirtualKey.id, [e.key_id for e in entries])
    taken_values = _existing(session, VirtualKey.value_hash, [e.digest for e in entries])
    teams = _existing(session, Team.id, [e.body.team_id for e in entries if e.body.team_id])
    customers = _existing(session, Customer.id,
                          [e.body.customer_id for e in entries if e.body.customer_id])
    for index, entry in enumerate(entries):
        where = f"virtual_keys[{index}]"
        if entry.key_id in taken_ids:
            raise ApiError(409, f"{where}.id: virtual key {entry.key_id!r} already exists", field=f"{where}.id")
        if entry.digest in taken_values:
            raise ApiError(409, f"{where}.value: already used by another virtual key", field=f"{where}.value")
        if entry.body.team_id and entry.body.team_id not in teams:
            raise invalid(f"{where}.team_id", f"unknown team {entry.body.team_id!r}")
        if entry.body.customer_id and entry.body.customer_id not in customers:
            raise invalid(f"{where}.customer_id", f"unknown customer {entry.body.customer_id!r}")
        try:
            check_provider_configs(settings, entry.body.provider_configs)
        except ApiError as exc:
            raise invalid(f"{where}.{exc.field}", exc.message.partition(": ")[2]) from exc


def _no_repeats(entries: Sequence[_Entry]) -> None:
    seen_ids: dict[str, int] = {}
    seen_values: dict[str, int] = {}
    for index, entry in enumerate(entries):
        where = f"virtual_keys[{index}]"
        first = seen_ids.setdefault(entry.key_id, index)
        if first != index:
            raise ApiError(409, f"{where}.id: {entry.key_id!r} is also the id of virtual_keys[{first}]",
                           field=f"{where}.id")
        first = seen_values.setdefault(entry.digest, index)
        if first != index:
            raise ApiError(409, f"{where}.value: the same value as virtual_keys[{first}]", field=f"{where}.value")


def _existing(session: Session, column: Any, values: Iterable[str]) -> set[str]:
    """Which of ``values`` the store holds in ``column`` (queried in chunks)."""
    wanted = sorted(set(values))
    found: set[str] = set()
    for start in range(0, len(wanted), _IDS_PER_QUERY):
        found.update(session.scalars(select(column).where(column.in_(wanted[start:start + _IDS_PER_QUERY]))))
    return found
