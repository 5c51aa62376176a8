"""Which provider made a stored response, for which virtual key and end user: what routes
`GET`/`DELETE /v1/responses/{id}`, `/cancel` and `/input_items` to the right provider, and
keeps one key from reading another's responses through the gateway's shared provider keys.

A bounded in-memory map (the oldest entries go first). It lives in one process, so on
several nodes or after a restart a response made elsewhere is unknown here (404): the
request log has no column for the provider's response id, and adding one means a
migration on the hot table; kept for later, when the log records it.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ResponseOwner:
    provider: str
    model: str
    key_id: str | None  # the virtual key that made it; None when made without one
    end_user: str | None = None  # the end user it was made for (its operations count against them)


class ResponseDirectory:
    """Response id → `ResponseOwner`, at most ``capacity`` entries."""

    def __init__(self, capacity: int = 100_000) -> None:
        self._capacity = capacity
        self._owners: OrderedDict[str, ResponseOwner] = OrderedDict()

    def note(self, response_id: str, owner: ResponseOwner) -> None:
        self._owners[response_id] = owner
        self._owners.move_to_end(response_id)
        if len(self._owners) > self._capacity:
            self._owners.popitem(last=False)

    def get(self, response_id: str) -> ResponseOwner | None:
        return self._owners.get(response_id)

    def forget(self, response_id: str) -> None:
        self._owners.pop(response_id, None)

    def __len__(self) -> int:
        return len(self._owners)
