"""The policy snapshot a request is judged by, for every route that identifies a key.

With every key loaded at start this is simply the current snapshot. With keys loaded on
demand (`tollway.store.key_cache`, past `virtual_key_cache.load_all_up_to`) a key the
current snapshot lacks is looked up first — batched with other lookups, unknown keys
remembered — so that no route (chat, media, stored responses, model listing, key info)
answers 401 to a stored key merely because this node has not needed it yet.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from tollway.errors import key_lookup_unavailable
from tollway.governance.model import PolicySnapshot

KeyLookup = Callable[[str], Awaitable[PolicySnapshot]]


class PolicySource:
    """Call it for the current snapshot; await `for_key` for one that holds a presented key."""

    __slots__ = ("_current", "_lookup")

    def __init__(self, current: Callable[[], PolicySnapshot], lookup: KeyLookup | None = None) -> None:
        self._current = current
        self._lookup = lookup

    def __call__(self) -> PolicySnapshot:
        return self._current()

    async def for_key(self, key_hash: str | None) -> PolicySnapshot:
        """The current snapshot, or — when it lacks ``key_hash`` and keys load on demand —
        the one the lookup returns (which still lacks the key when no such key is stored).
        A lookup that cannot be made (database down, too many pending) fails closed: 503."""
        snapshot = self._current()
        if key_hash is None or self._lookup is None or key_hash in snapshot.keys_by_hash:
            return snapshot
        try:
            return await self._lookup(key_hash)
        except Exception as exc:
            raise key_lookup_unavailable(type(exc).__name__) from None


__all__ = ["KeyLookup", "PolicySource"]
