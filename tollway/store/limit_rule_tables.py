"""The table of limit rules (``governance.limits``, `tollway.governance.limit_rules`): each
rule's selector and template, with a budget, rate limit and concurrency limit owned 1:1 as
every governed entity's (their usage kept, and taken back, the same way)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from tollway.store.tables import ID, Base, _Governed, _Managed, _Timestamps


class LimitRuleRow(_Governed, _Managed, _Timestamps, Base):
    """A limit rule; ``id`` is its name. ``match``: dimension -> accepted values, as
    configured (normalised when the snapshot is built); ``per``: the dimensions it keeps
    counters per; ``when_missing``: ``skip`` or ``deny`` a request without one."""

    __tablename__ = "limit_rules"

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    match: Mapped[dict[str, Any]] = mapped_column(JSON)
    per: Mapped[list[str]] = mapped_column(JSON, default=list, server_default="[]")
    when_missing: Mapped[str] = mapped_column(String(16), default="skip", server_default="skip")
    description: Mapped[str] = mapped_column(Text, default="", server_default="")
