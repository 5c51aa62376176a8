"""When each virtual key was last used, written with the periodic usage flush.

A database write per request would cost more than the request itself: the recorder
notes the time of each key's latest request in memory (a dict assignment), and the
flush writes one row per key used since the last flush, in one statement. A timestamp
only moves forward, so several gateways writing their own notes agree on the latest.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import cast

from sqlalchemy import Table, bindparam, or_, update

from tollway.store.database import Database
from tollway.store.tables import VirtualKey

_KEYS = cast(Table, VirtualKey.__table__)
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
# Keys that no longer exist match nothing; ``updated_at`` is set to itself, since using a
# key is no change to it (its onupdate would otherwise stamp every key used).
_TOUCH = (
    update(_KEYS)
    .where(_KEYS.c.id == bindparam("key_id"),
           or_(_KEYS.c.last_used_at.is_(None), _KEYS.c.last_used_at < bindparam("at")))
    .values(last_used_at=bindparam("at"), updated_at=_KEYS.c.updated_at)
)


class KeyActivity:
    """The latest request time of each key used since the last flush."""

    def __init__(self) -> None:
        self._latest: dict[str, int] = {}  # key id -> epoch ms

    @property
    def pending(self) -> int:
        """Keys noted and not yet written."""
        return len(self._latest)

    def note(self, key_id: str, at_ms: int) -> None:
        """``key_id`` served a request at ``at_ms`` (called per request: a dict lookup at most)."""
        if at_ms > self._latest.get(key_id, 0):
            self._latest[key_id] = at_ms

    async def flush(self, db: Database) -> int:
        """Write the notes; returns how many keys. A failed write keeps them for the next flush."""
        if not self._latest:
            return 0
        taken, self._latest = self._latest, {}
        rows = [{"key_id": key_id, "at": _EPOCH + timedelta(milliseconds=at_ms)} for key_id, at_ms in taken.items()]
        try:
            async with db.session() as session:
                await session.execute(_TOUCH, rows)
        except BaseException:
            for key_id, at_ms in taken.items():  # notes made meanwhile are newer or equal: keep the later
                self.note(key_id, at_ms)
            raise
        return len(rows)
