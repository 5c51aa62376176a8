"""When a memo of per-key derivations survives a new policy snapshot.

The enforcer remembers, per key, what its limits derive to (the static checks, the
end users' checks, the tags' checks). Such a memo used to be dropped whole whenever the
snapshot changed, and under a control plane making 100 changes a second, one key's
change threw away what every other key's requests had built. A change is applied by
replacing only the maps it touched (`tollway.store.policy_changes`), and a changed key
gets a new policy object while the others keep theirs. So:

- when everything but ``keys_by_hash`` (and the version number) is the very same
  objects as in the snapshot the memo was built under, the memo carries over, and each
  entry, which keeps the key policy object it was built for, holds exactly while the
  snapshot still presents that object;
- anything else changed (a team, a customer, a provider, a model, a tag, or a field
  added later) clears the memo: those changes are rare, and every key may depend on them.

Pure: identity comparisons only.
"""

from __future__ import annotations

import dataclasses

from tollway.governance.model import PolicySnapshot

# Every field but the keys and the version, found by introspection: a field added to
# the snapshot later is compared without anyone remembering to add it here.
_SHARED_FIELDS = tuple(field.name for field in dataclasses.fields(PolicySnapshot)
                       if field.name not in ("keys_by_hash", "version"))


class KeyMemoScope:
    """Tells a memo whether its entries may outlive a change of snapshot."""

    __slots__ = ("_shared", "_snapshot")

    def __init__(self) -> None:
        self._snapshot: PolicySnapshot | None = None
        self._shared: tuple[object, ...] = ()

    def carries_over(self, snapshot: PolicySnapshot) -> bool:
        """False when the memo must be cleared before use under ``snapshot`` (which then
        becomes the one it is built under); True while only keys changed since."""
        if snapshot is self._snapshot:
            return True
        shared = tuple([getattr(snapshot, name) for name in _SHARED_FIELDS])
        same = self._snapshot is not None and all(
            now is before for now, before in zip(shared, self._shared, strict=True))
        self._snapshot, self._shared = snapshot, shared
        return same


__all__ = ["KeyMemoScope"]
