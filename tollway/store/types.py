"""Column types that behave the same on SQLite and PostgreSQL.

`Money` reads USD amounts back as Decimals with 9 places on both databases (see its
notes on SQLite); `UtcDateTime` always hands back timezone-aware UTC datetimes (SQLite
stores them without an offset).
"""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from sqlalchemy import DateTime, Dialect, Numeric
from sqlalchemy.types import TypeDecorator, TypeEngine

NANO = Decimal("0.000000001")


def to_money(value: Decimal | int | float | str) -> Decimal:
    """A Decimal rounded to 9 places, the precision of every money column."""
    if isinstance(value, float):
        value = repr(value)  # the shortest text that maps back to the same float
    return Decimal(value).quantize(NANO)


class _ExactNumeric(Numeric[Decimal]):
    """NUMERIC DDL with no float conversion on the way in or out (used on SQLite)."""

    def bind_processor(self, dialect: Dialect) -> None:
        return None

    def result_processor(self, dialect: Dialect, coltype: object) -> None:
        return None


class Money(TypeDecorator[Decimal]):
    """USD as NUMERIC(20, 9), read back as a Decimal rounded to 9 places.

    PostgreSQL stores it exactly. SQLite has no decimal type and keeps a double: exact
    to the nano-dollar up to 15 significant digits (below 1 million USD), within
    about 1e-7 USD beyond. Values are bound as text so SQLite does the one rounding,
    and read back through the shortest float text, so no float noise leaks into the
    Decimal (and SQLAlchemy's float warning is not needed).
    """

    impl = Numeric(20, 9)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(_ExactNumeric(20, 9))
        return dialect.type_descriptor(Numeric(20, 9))

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        money = to_money(value)
        return format(money, "f") if dialect.name == "sqlite" else money

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        return None if value is None else to_money(value)


class UtcDateTime(TypeDecorator[datetime]):
    """TIMESTAMP WITH TIME ZONE that always round-trips as aware UTC.

    Naive datetimes are taken as UTC (a request log must not fail on them).
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)
