"""What the routers of the governed entities (virtual keys, teams, customers, model
configs) share: loading a row by its id or 404, the ``{"message", "<kind>": view}``
envelope with live usage, a page of rows, and the routes whose shape is the same for
each of them (get, a plain delete, the budget and rate-limit usage resets).

A router describes its entity once (`EntityRoutes`) and keeps what is its own: its
create and update bodies, its list filters, and what a delete must not orphan.
"""

# No `from __future__ import annotations`: FastAPI reads the annotations of the endpoints
# built here, which name each entity's own path parameter, when they are added.

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Generic, Protocol, TypeVar

from fastapi import APIRouter, Path
from pydantic import BaseModel
from sqlalchemy import Select, select
from sqlalchemy.orm import Session, selectinload

from tollway.api.context import ApiWriter, ManagedRuntime, Page, RuntimeDep, change, paginate, read, search_filter
from tollway.api.errors import conflict, not_found
from tollway.api.limits import LiveUsage, Which, reset_route
from tollway.api.ownership import refuse_config_managed
from tollway.api.responses import Message
from tollway.store.entities import Diff


class _Row(Protocol):
    id: Any
    budget: Any
    rate_limit: Any
    concurrency: Any


RowT = TypeVar("RowT", bound=_Row)


@dataclass(frozen=True)
class EntityRoutes(Generic[RowT]):
    """One governed entity, as its routes see it."""

    table: type[RowT]
    kind: str  # the audit entity type and the envelope's key: "virtual_key"
    param: str  # the path parameter holding its id: "key_id"
    view: Callable[[RowT, LiveUsage], dict[str, Any]]
    envelope_model: type[BaseModel]  # {"message", kind: view}
    searched: Sequence[Any]  # the columns a list's ``search`` matches
    loaders: Sequence[Any] = ()  # what else a view needs loaded, beyond the budget and rate limit

    @property
    def label(self) -> str:
        """The kind in messages: "virtual key"."""
        return self.kind.replace("_", " ")

    @property
    def options(self) -> tuple[Any, ...]:
        return (selectinload(self.table.budget), selectinload(self.table.rate_limit),
                selectinload(self.table.concurrency), *self.loaders)

    def load(self, session: Session, ident: str) -> RowT:
        """The row with id ``ident``, loaded for its view; 404 when there is none."""
        statement = select(self.table).where(self.table.id == ident).options(*self.options)
        row = session.scalars(statement).one_or_none()
        if row is None:
            raise not_found(self.label, ident)
        return row

    def load_to_change(self, session: Session, ident: str) -> RowT:
        """`load`, then 409 ``managed_by_config`` when the config file manages the row."""
        row = self.load(session, ident)
        refuse_config_managed(row, self.label, ident)
        return row

    def check_new(self, session: Session, ident: str) -> None:
        """409 when a row with id ``ident`` exists already."""
        if session.get(self.table, ident) is not None:
            raise conflict(f"{self.label} {ident!r} already exists")

    def insert(self, writer: ApiWriter, identity: Mapping[str, Any], values: Mapping[str, Any],
               body: Any) -> tuple[RowT, Diff]:
        """A new row with ``body``'s budget and rate limit; the caller records it (audit)
        once it is complete."""
        row, diff = writer.upsert(None, self.table, identity, values)
        writer.sync_budget(row, body.budget, diff)
        writer.sync_rate_limit(row, body.rate_limit, diff)
        writer.sync_concurrency(row, body.concurrency, diff)
        writer.sync_end_users(row, body, diff)
        return row, diff

    def delete(self, writer: ApiWriter, row: RowT, ident: str) -> None:
        """Delete ``row`` (its limits retained with their usage), audited with its view
        (stored usage); 409 when the config file manages it."""
        refuse_config_managed(row, self.label, ident)
        writer.delete(row, self.kind, ident, self.view(row, LiveUsage()))

    def envelope(self, message: str, view: dict[str, Any]) -> dict[str, Any]:
        return {"message": message, self.kind: view}

    async def changed(self, runtime: ManagedRuntime, message: str, write: Callable[[ApiWriter], RowT],
                      view: Callable[[RowT, LiveUsage], dict[str, Any]] | None = None) -> dict[str, Any]:
        """Run ``write`` in one change and answer the envelope of the row it returns,
        shown by ``view`` (default: the entity's) with live usage."""
        present = view or self.view
        live = LiveUsage()
        shown = await change(runtime, write, lambda row: present(row, live))
        await live.fill(runtime.store, runtime.clock_ms())
        return self.envelope(message, shown)

    async def page(self, runtime: ManagedRuntime, page: Page, statement: Select[Any], search: str | None,
                   order_by: Sequence[Any] | None = None, cursor: Any = None) -> dict[str, Any]:
        """``page`` of ``statement``'s rows (narrowed by ``search``, from ``cursor`` on) in
        ``order_by`` order (default: by id), as the list envelope ``{kind + "s": [view],
        "count", "limit", "offset"}``; ``count`` counts every page, not from the cursor."""
        if search:
            statement = statement.where(search_filter(search, *self.searched))
        live = LiveUsage()

        def query(session: Session) -> tuple[int, list[dict[str, Any]]]:
            total, rows = paginate(session, statement, page, order_by or (self.table.id,), self.options, cursor)
            return total, [self.view(row, live) for row in rows]

        total, views = await read(runtime, query)
        await live.fill(runtime.store, runtime.clock_ms())
        return {f"{self.kind}s": views, "count": total, "limit": page.limit, "offset": page.offset}

    # -- routes the same for every entity ------------------------------------------------------

    def add_get(self, router: APIRouter, name: str) -> None:
        """``GET /{id}``, operation ``name``."""

        async def get(ident: Annotated[str, Path(alias=self.param)], runtime: RuntimeDep) -> dict[str, Any]:
            live = LiveUsage()
            view = await read(runtime, lambda session: self.view(self.load(session, ident), live))
            await live.fill(runtime.store, runtime.clock_ms())
            return self.envelope(f"{self.label} found", view)

        router.add_api_route(f"/{{{self.param}}}", get, methods=["GET"], name=name,
                             response_model=self.envelope_model, summary=f"Get a {self.label}")

    def add_delete(self, router: APIRouter, name: str, description: str | None = None) -> None:
        """``DELETE /{id}`` of an entity that nothing else refers to, operation ``name``."""

        async def delete(ident: Annotated[str, Path(alias=self.param)], runtime: RuntimeDep) -> dict[str, Any]:
            def write(writer: ApiWriter) -> None:
                self.delete(writer, self.load(writer.session, ident), ident)

            await change(runtime, write, lambda _: None)
            return {"message": f"{self.label} {ident!r} deleted"}

        router.add_api_route(f"/{{{self.param}}}", delete, methods=["DELETE"], name=name, response_model=Message,
                             summary=f"Delete a {self.label}", description=description)

    def add_resets(self, router: APIRouter) -> None:
        """``POST /{id}/budget/reset`` and ``POST /{id}/rate-limit/reset``."""
        self._add_reset(router, "budget", "budget")
        self._add_reset(router, "rate_limit", "rate-limit")

    def _add_reset(self, router: APIRouter, which: Which, part: str) -> None:
        async def reset(ident: Annotated[str, Path(alias=self.param)], runtime: RuntimeDep) -> dict[str, Any]:
            live = LiveUsage()
            view = await reset_route(runtime, lambda session: self.load(session, ident), which, self.kind, ident,
                                     lambda row: self.view(row, live))
            await live.fill(runtime.store, runtime.clock_ms())
            return self.envelope(f"{part.replace('-', ' ')} usage reset", view)

        router.add_api_route(f"/{{{self.param}}}/{part}/reset", reset, methods=["POST"],
                             response_model=self.envelope_model, summary=f"Reset a {self.label}'s {part} usage")
