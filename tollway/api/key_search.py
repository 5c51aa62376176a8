"""Filters of the virtual key list that stay fast at a million keys: a name prefix
(served by the name index) and an id cursor (``after``), which pages through any number
of keys at the cost of one page, where an ``offset`` makes the database skip rows."""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_

from tollway.store.tables import VirtualKey


def name_prefix_filter(prefix: str, dialect: str) -> Any:
    """Names that start with ``prefix`` (case-sensitive).

    PostgreSQL serves ``LIKE 'prefix%'`` from the ``text_pattern_ops`` index. SQLite's
    LIKE ignores case and skips the index, so there the match is the equivalent range of
    the binary order, which the index serves.
    """
    starts = VirtualKey.name.startswith(prefix, autoescape=True)
    if dialect != "sqlite":
        return starts
    upper = prefix[:-1] + chr(ord(prefix[-1]) + 1)
    return and_(VirtualKey.name >= prefix, VirtualKey.name < upper, starts)
