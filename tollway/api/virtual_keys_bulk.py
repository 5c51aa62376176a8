"""`POST /api/governance/virtual-keys/bulk`: up to 10,000 new virtual keys in one call,
for migrations. All or nothing: every entry is checked (shape, duplicates inside the
call and against the store, owners, providers) before the first row is written, in the
same locked transaction as the writes; one bad entry answers 4xx naming its index and
field (``virtual_keys[3].team_id``) and writes nothing. The answer carries each key's
value, the only time it is shown.

Status codes follow the rest of the API: 422 for an invalid or unknown field, 409 for an
id or value that is taken (by the store or by another entry of the call). The rows are
built by the ORM on the event loop of the node that serves the call, a hundred keys per
turn of the loop (requests served meanwhile wait for one turn, not for the whole call);
the other nodes apply the result from the change log in one go.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Iterable, Sequence
from typing import Annotated, Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from tollway.api.context import ApiWriter, RuntimeDep, now_of
from tollway.api.errors import ApiError, invalid
from tollway.api.limits import LiveUsage
from tollway.api.owners import check_provider_configs
from tollway.api.responses import Message, VirtualKeyView
from tollway.api.schemas import VirtualKeyCreate
from tollway.api.virtual_keys import add_key, key_view
from tollway.config.schema import VK_PREFIX
from tollway.governance.engine import hash_key
from tollway.store.changes import record_changes
from tollway.store.entities import EntityError
from tollway.store.tables import Customer, Team, VirtualKey, new_id
from tollway.store.version import bump_version, config_change

MAX_KEYS = 10_000
_CHUNK = 100
log = logging.getLogger(__name__)
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
    # `context.change`, in steps: the rows are written and shown `_CHUNK` keys per turn of
    # the event loop, so that the requests this node serves meanwhile are not held up.
    async with config_change(runtime.db) as session:
        writer = ApiWriter(session.sync_session, now_of(runtime), runtime)
        await session.run_sync(lambda _: check_entries(writer.session, runtime.settings, entries))
        views: list[dict[str, Any]] = []
        for first in range(0, len(entries), _CHUNK):
            views += await session.run_sync(_write, writer, entries, first, live)
            await asyncio.sleep(0)
        await record_changes(session, await bump_version(session), writer.touched)
    await runtime.store.load(writer.seeds)  # before the new policy can use them
    try:
        await runtime.refresh_policy()
    except Exception:
        log.exception("management API: the policy could not be brought up to date after a bulk create")
    await live.fill(runtime.store, runtime.clock_ms())
    return {"message": f"{len(views)} virtual keys created; store their values now: they are not shown again",
            "virtual_keys": views, "count": len(views)}


def _write(_: Session, writer: ApiWriter, entries: Sequence[_Entry], first: int,
           live: LiveUsage) -> list[dict[str, Any]]:
    """Add the checked entries from ``first`` on (`_CHUNK` of them); their views."""
    chunk = entries[first:first + _CHUNK]
    rows = []
    for index, entry in enumerate(chunk, first):
        try:
            rows.append(add_key(writer, entry.body, entry.key_id, entry.value))
        except EntityError as exc:  # a limit the store cannot hold: name the entry
            field = f"virtual_keys[{index}].{exc.field}" if exc.field else f"virtual_keys[{index}]"
            raise invalid(field, exc.message) from exc
    writer.session.flush()
    return [key_view(row, live, entry.value) for row, entry in zip(rows, chunk, strict=True)]


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
