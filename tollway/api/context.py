"""What the management API needs from the running gateway, and what every route shares:
the runtime dependency, pagination, and the two kinds of transaction (read, change).

A change runs in one transaction: the config lock first (so concurrent changes
serialise), the writes, the audit entries, the version bump and the change log entries
(`tollway.store.changes`); nothing is written when anything fails. After the commit the
counter store learns of new limits and the policy applies just the changed entities, so
the very next request on this node sees the change (other nodes poll the version four
times a second and apply the same log). Counters are never forgotten here: a dropped
limit keeps its usage (`tollway.store.retention`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Protocol, TypeVar

from fastapi import APIRouter, Depends, Query, Request
from sqlalchemy import Select, func, or_, select
from sqlalchemy.orm import Session

from tollway.api.principal import current_principal
from tollway.config import Settings
from tollway.governance.counters.base import CounterStore
from tollway.governance.enforcer import Enforcer
from tollway.governance.model import PolicySnapshot
from tollway.pricing import PriceCatalog
from tollway.providers.client import ProviderClient
from tollway.store.changes import record_changes
from tollway.store.database import Database
from tollway.store.entities import EntityWriter
from tollway.store.entity_counts import stored_count
from tollway.store.policy_sync import PolicyFollower, PreparedChange
from tollway.store.request_log import RequestLogWriter
from tollway.store.usage import datetime_to_ms, ms_to_datetime
from tollway.store.version import bump_version, config_change

T = TypeVar("T")
R = TypeVar("R")
F = TypeVar("F", bound=Callable[..., Any])

ACTOR = "admin"
MAX_PAGE = 1000
MAX_OFFSET = 10**12  # a database integer holds 2**63 - 1; larger offsets failed inside the driver
RESET_USAGE = Query(description="Also reset the usage of the budget / rate limit this update states.")
CASCADE = Query(description="Also delete what belongs to it; without it, a delete that would orphan anything is 409.")
log = logging.getLogger(__name__)


class ManagedRuntime(Protocol):
    """The parts of the running gateway (`tollway.server.runtime.Runtime`) the API uses."""

    settings: Settings
    db: Database
    store: CounterStore
    enforcer: Enforcer
    snapshot: PolicySnapshot
    pricing: PriceCatalog
    providers: dict[str, ProviderClient]  # by name: the explain API prices a body as the proxy does
    log_writer: RequestLogWriter | None
    clock_ms: Callable[[], int]

    policy: PolicyFollower

    async def refresh_policy(self, force: bool = False, prepared: PreparedChange | None = None) -> None: ...


# The dependencies are coroutines: FastAPI runs a plain function in its thread pool, and
# two thread hops per call held up the proxy on the same event loop (GIL hand-overs).
async def _runtime(request: Request) -> ManagedRuntime:
    return request.app.state.runtime  # type: ignore[no-any-return]


RuntimeDep = Annotated[ManagedRuntime, Depends(_runtime)]


@dataclass(frozen=True, slots=True)
class Page:
    limit: int
    offset: int


async def _page(
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="Rows per page.")] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET, description="Rows to skip.")] = 0,
) -> Page:
    return Page(limit, offset)


PageDep = Annotated[Page, Depends(_page)]


def paginate(session: Session, statement: Select[Any], page: Page, order_by: Sequence[Any],
             options: Sequence[Any] = (), cursor: Any = None) -> tuple[int, Sequence[Any]]:
    """(rows matching in all, this page's rows in ``order_by`` order, loaded with ``options``).

    ``cursor`` (``id > after``) picks the page's rows, not what is counted: a deep page
    costs one page. An unfiltered table's total is its stored count (no scan)."""
    total = stored_count(session, statement)
    if total is None:
        total = session.scalar(select(func.count()).select_from(statement.subquery()))
    if cursor is not None:
        statement = statement.where(cursor)
    statement = statement.order_by(*order_by).limit(page.limit).offset(page.offset).options(*options)
    return int(total or 0), session.scalars(statement).all()


def partial_update(router: APIRouter, path: str, **options: Any) -> Callable[[F], F]:
    """Register a partial update under PUT (Bifrost's verb) and PATCH, as two operations."""
    def register(endpoint: F) -> F:
        router.add_api_route(path, endpoint, methods=["PUT"], **options)
        router.add_api_route(path, endpoint, methods=["PATCH"], name=f"{endpoint.__name__}_patch", **options)
        return endpoint

    return register


def search_filter(term: str, *columns: Any) -> Any:
    """Case-insensitive substring match on any of ``columns``."""
    needle = term.strip().lower()
    return or_(*(func.lower(column).contains(needle, autoescape=True) for column in columns))


class ApiWriter(EntityWriter):
    """An `EntityWriter` acting for the admin, which may also reset counters; its audit
    entries name the admin token of the request (`tollway.api.principal`)."""

    def __init__(self, session: Session, now: datetime, runtime: ManagedRuntime) -> None:
        super().__init__(session, now, ACTOR)
        principal = current_principal()
        if principal is not None:
            self.token = (principal.token_id, principal.name)
        self.runtime = runtime
        self.resets: set[str] = set()


def now_of(runtime: ManagedRuntime) -> datetime:
    """The gateway clock's now (tests inject the clock)."""
    return ms_to_datetime(runtime.clock_ms())


async def read(runtime: ManagedRuntime, query: Callable[[Session], T]) -> T:
    """Run ``query`` on a synchronous session in one read transaction."""
    async with runtime.db.session() as session:
        return await session.run_sync(query)


async def change(runtime: ManagedRuntime, write: Callable[[ApiWriter], R], present: Callable[[R], T]) -> T:
    """Run ``write`` in one locked transaction, then ``present`` its result (after the
    flush, inside the transaction); apply the change to counters and policy after the commit."""
    now = now_of(runtime)

    def run(session: Session) -> tuple[ApiWriter, T]:
        writer = ApiWriter(session, now, runtime)
        result = write(writer)
        session.flush()
        return writer, present(result)

    prepared = None
    async with config_change(runtime.db) as session:
        writer, presented = await session.run_sync(run)
        if writer.changed:
            version = await bump_version(session)
            await record_changes(session, version, writer.touched)
            # This node's policy with the change, read in this transaction; swapped in
            # after the commit (tollway/store/policy_sync.py).
            prepared = await runtime.policy.prepare(session, version, writer.touched)
        if writer.resets:  # inside the transaction: a store failure undoes the whole change
            await runtime.store.reset(sorted(writer.resets), datetime_to_ms(now))
    if writer.seeds:
        await runtime.store.load(writer.seeds)  # before the new policy can use them
    if writer.changed:
        try:
            await runtime.refresh_policy(prepared=prepared)  # just this change, or the changes since the version held
        except Exception:
            log.exception("management API: the policy could not be reloaded after a change")
    return presented
