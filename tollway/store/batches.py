"""Batch files and batches in the database (`tables.BatchFile`, `tables.Batch`): who owns
them, what was charged, and the claims by which one gateway node at a time follows a batch up.

A follow-up claims a batch with a lease (a conditional update: the row's lease is free or
has lapsed); the node that settles it flips its state from ``open`` to ``settled`` under its
own lease, so a batch is refunded once however many nodes poll, and a node that dies
mid-poll leaves a lease that lapses for another to take over.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update

from tollway.store.batch_tables import Batch, BatchFile
from tollway.store.database import Database

OPEN = "open"
SETTLED = "settled"


@dataclass(frozen=True, slots=True)
class Settlement:
    """What a batch used, as read from its results, and the provider's last word on it."""

    provider_status: str
    tokens: int
    cost_nano: int
    requests: int  # requests that ran (answered or failed by the model), of those charged


async def save_file(db: Database, row: BatchFile) -> None:
    async with db.session() as session:
        session.add(row)


async def find_file(db: Database, file_id: str) -> BatchFile | None:
    async with db.session() as session:
        return await session.get(BatchFile, file_id)


async def forget_file(db: Database, file_id: str) -> None:
    async with db.session() as session:
        row = await session.get(BatchFile, file_id)
        if row is not None:
            await session.delete(row)


async def file_owner(db: Database, file_id: str) -> tuple[str | None, str, str, str] | None:
    """(key id, provider, model, provider key id) of a file the gateway knows: an uploaded
    input file, or the output or error file of a batch submitted through it; None for any other."""
    async with db.session() as session:
        uploaded = await session.get(BatchFile, file_id)
        if uploaded is not None:
            return uploaded.virtual_key_id, uploaded.provider, uploaded.model, uploaded.provider_key_id
        made = (await session.scalars(select(Batch).where(
            or_(Batch.output_file_id == file_id, Batch.error_file_id == file_id)).limit(1))).first()
        if made is None:
            return None
        return made.virtual_key_id, made.provider, made.model, made.provider_key_id


async def save_batch(db: Database, row: Batch) -> None:
    async with db.session() as session:
        session.add(row)


async def find_batch(db: Database, batch_id: str) -> Batch | None:
    async with db.session() as session:
        return await session.get(Batch, batch_id)


async def batches_of_key(db: Database, key_id: str | None, api: str) -> list[Batch]:
    async with db.session() as session:
        rows = await session.scalars(select(Batch).where(Batch.virtual_key_id == key_id, Batch.api == api))
        return list(rows)


async def note_files(db: Database, batch_id: str, output_file_id: str | None, error_file_id: str | None) -> None:
    """Remember a batch's output and error files (its key may then read them)."""
    if output_file_id is None and error_file_id is None:
        return
    async with db.session() as session:
        values = {name: value for name, value in (("output_file_id", output_file_id),
                                                   ("error_file_id", error_file_id)) if value is not None}
        await session.execute(update(Batch).where(Batch.id == batch_id).values(**values))


async def due_batches(db: Database, now: datetime, limit: int) -> list[str]:
    """Ids of open batches whose next poll is due and whose lease is free."""
    async with db.session() as session:
        rows = await session.scalars(
            select(Batch.id).where(Batch.state == OPEN, Batch.next_poll_at <= now,
                                   or_(Batch.lease_until.is_(None), Batch.lease_until < now))
            .order_by(Batch.next_poll_at).limit(limit))
        return list(rows)


async def claim(db: Database, batch_id: str, owner: str, now: datetime, lease: timedelta) -> Batch | None:
    """Take the follow-up of an open batch for ``lease``; the row, or None when another
    node holds it or it is settled."""
    async with db.session() as session:
        taken = await session.execute(
            update(Batch).where(Batch.id == batch_id, Batch.state == OPEN,
                                or_(Batch.lease_until.is_(None), Batch.lease_until < now))
            .values(lease_owner=owner, lease_until=now + lease))
        if _rows(taken) != 1:
            return None
        return await session.get(Batch, batch_id)


async def reschedule(db: Database, batch_id: str, owner: str, next_poll_at: datetime, polls: int,
                     provider_status: str | None) -> None:
    """Not ended yet: poll again at ``next_poll_at``; the lease is given up."""
    async with db.session() as session:
        await session.execute(
            update(Batch).where(Batch.id == batch_id, Batch.lease_owner == owner)
            .values(next_poll_at=next_poll_at, polls=polls, provider_status=provider_status, lease_owner=None,
                    lease_until=None))


async def mark_settled(db: Database, batch_id: str, owner: str, now: datetime, settlement: Settlement) -> bool:
    """Record the settlement, once: True for the node that did it (under its own lease)."""
    async with db.session() as session:
        done = await session.execute(
            update(Batch).where(Batch.id == batch_id, Batch.state == OPEN, Batch.lease_owner == owner)
            .values(state=SETTLED, settled_at=now, provider_status=settlement.provider_status,
                    actual_tokens=settlement.tokens, actual_cost_nano=settlement.cost_nano, lease_owner=None,
                    lease_until=None))
        return _rows(done) == 1


def _rows(result: object) -> int:
    """Rows an UPDATE matched (its `CursorResult.rowcount`)."""
    count = getattr(result, "rowcount", 0)
    return count if isinstance(count, int) else 0
