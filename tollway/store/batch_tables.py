"""The tables of governed batches (`tollway.proxy.batch_*`): the input files uploaded through
the gateway and the batches submitted with them, charged at submission and settled later."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from tollway.store.tables import Base, utcnow
from tollway.store.types import UtcDateTime


class BatchFile(Base):
    """A batch input file uploaded through the gateway (`tollway.proxy.batch_upload`): who
    uploaded it and what the gateway read in it, so that a batch of it is charged its worst
    case and only its uploader may use it. ``id`` is the provider's file id."""

    __tablename__ = "batch_files"

    id: Mapped[str] = mapped_column(String(256), primary_key=True)
    provider: Mapped[str] = mapped_column(String(256))
    model: Mapped[str] = mapped_column(String(256))
    endpoint: Mapped[str] = mapped_column(String(64))  # the lines' url: /v1/chat/completions ...
    provider_key_id: Mapped[str] = mapped_column(String(256))  # the provider account that holds it
    virtual_key_id: Mapped[str | None] = mapped_column(String(256), index=True)
    lines: Mapped[int] = mapped_column(Integer)
    worst_tokens: Mapped[int] = mapped_column(BigInteger)
    worst_cost_nano: Mapped[int] = mapped_column(BigInteger)  # at the batch price
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class Batch(Base):
    """A batch submitted through the gateway (`tollway.proxy.batch_*`): its worst case was
    charged to every limit at submission (``charges``: per counter the amount and its window),
    and the follow-up settles it once the provider ends it. ``id`` is the provider's batch id;
    ``lease_owner`` / ``lease_until`` let one gateway node at a time follow it up."""

    __tablename__ = "batches"
    __table_args__ = (Index(None, "state", "next_poll_at"),)

    id: Mapped[str] = mapped_column(String(256), primary_key=True)
    api: Mapped[str] = mapped_column(String(16))  # its batch API: openai_batches or message_batches (adapters.base)
    provider: Mapped[str] = mapped_column(String(256))
    model: Mapped[str] = mapped_column(String(256))
    provider_key_id: Mapped[str] = mapped_column(String(256))  # the provider account that runs it
    virtual_key_id: Mapped[str | None] = mapped_column(String(256), index=True)
    team_id: Mapped[str | None] = mapped_column(String(256))
    customer_id: Mapped[str | None] = mapped_column(String(256))
    input_file_id: Mapped[str | None] = mapped_column(String(256))
    output_file_id: Mapped[str | None] = mapped_column(String(256))
    error_file_id: Mapped[str | None] = mapped_column(String(256))
    requests: Mapped[int] = mapped_column(Integer)
    charged_tokens: Mapped[int] = mapped_column(BigInteger)
    charged_cost_nano: Mapped[int] = mapped_column(BigInteger)
    charges: Mapped[list[Any]] = mapped_column(JSON)  # [[counter, slot, amount, window_start_ms, window_end_ms], ...]
    state: Mapped[str] = mapped_column(String(16))  # open (charged, not yet settled) or settled
    provider_status: Mapped[str | None] = mapped_column(String(32))
    actual_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    actual_cost_nano: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    settled_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    next_poll_at: Mapped[datetime] = mapped_column(UtcDateTime)
    polls: Mapped[int] = mapped_column(Integer, default=0)
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[datetime | None] = mapped_column(UtcDateTime)
