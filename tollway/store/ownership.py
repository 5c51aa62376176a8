"""Who manages each entity: the config file or the management API, never both.

The model, and why: an operator who declares an entity in `tollway.yaml` expects the
file to be what runs, at every start, whatever happened in between; one who creates an
entity through the API or the UI expects it to stay as made. Letting both edit the same
entity makes one of them silently undo the other (the file resetting an API change at
the next start, or an API delete coming back with fresh usage). So each entity has one
manager, shown as ``managed_by`` everywhere (API, CLI, UI):

- ``config``: declared in the file. `apply_config` makes it what the file says at every
  start. The API and the UI refuse to change or delete it (409 ``managed_by_config``,
  naming the file); resetting its usage stays allowed (an operator's action on counters,
  not on configuration). A provider's budget and rate limit are ``config`` when the
  file states either.
- ``api``: created through the API (or the UI, or the CLI); the file leaves it alone.

Moving between the two, at a start: an API-managed entity the file now declares is
taken over by the file (a warning names it). A config-managed entity the file no longer
declares is deleted, like a delete through the API (what a file that is the source of
truth means, and what revokes a key removed from it); its budgets and rate limits are
retained with their usage, so declaring it again does not give it a fresh budget. When
API-managed entities still refer to it (a team whose keys were created through the
API), deleting it would orphan them: it is handed over to the API instead, with a
warning.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from sqlalchemy import select

from tollway.config.schema import GovernanceConfig
from tollway.governance.names import model_key
from tollway.store.entities import EntityWriter, assign
from tollway.store.limit_rule_tables import LimitRuleRow
from tollway.store.tables import (
    MANAGED_BY_API,
    MANAGED_BY_CONFIG,
    Customer,
    ModelConfig,
    Tag,
    Team,
    VirtualKey,
)

T = TypeVar("T", Customer, Team, VirtualKey, ModelConfig, Tag, LimitRuleRow)
log = logging.getLogger(__name__)


def take_over(row: Any, where: str) -> None:
    """Warn when the file declares an entity the API managed until now (the caller
    then makes it the file's)."""
    if row.managed_by != MANAGED_BY_CONFIG:
        log.warning("config: %s was managed through the management API; the config file declares it, so the file "
                    "manages it from now on (changes made through the API are replaced by the file's values)", where)


def delete_undeclared_keys(writer: EntityWriter, governance: GovernanceConfig) -> None:
    """Delete the config-managed keys ``governance`` no longer declares. Run before the
    file's keys are applied, so that a key declared under a new id with the old one's
    value takes its value (and, through it, its usage) over."""
    for key in _undeclared(writer, VirtualKey, {k.id for k in governance.virtual_keys}, lambda k: k.id):
        _delete(writer, key, "virtual_key", key.id)
    writer.session.flush()


def release_removed(writer: EntityWriter, governance: GovernanceConfig) -> None:
    """Delete the config-managed teams, customers and model configs ``governance`` no
    longer declares, or hand them to the API when others still refer to them. Run after
    the file's entities are applied (a key may have moved to another team)."""
    session = writer.session
    for team in _undeclared(writer, Team, {t.id for t in governance.teams}, lambda t: t.id):
        keys = session.scalars(select(VirtualKey.id).where(VirtualKey.team_id == team.id)).all()
        _delete_or_hand_over(writer, team, "team", team.id, _names("virtual key", keys))
    session.flush()
    for customer in _undeclared(writer, Customer, {c.id for c in governance.customers}, lambda c: c.id):
        teams = session.scalars(select(Team.id).where(Team.customer_id == customer.id)).all()
        keys = session.scalars(select(VirtualKey.id).where(VirtualKey.customer_id == customer.id)).all()
        users = [part for part in (_names("team", teams), _names("virtual key", keys)) if part]
        _delete_or_hand_over(writer, customer, "customer", customer.id, " and ".join(users))
    declared = {(model_key(m.model_name), m.provider) for m in governance.model_configs}  # as bootstrap matches them
    for config in _undeclared(writer, ModelConfig, declared, lambda m: (model_key(m.model_name), m.provider)):
        _delete(writer, config, "model_config", config.id)
    for tag in _undeclared(writer, Tag, {t.name for t in governance.tags}, lambda t: t.id):
        _delete(writer, tag, "tag", tag.id)  # nothing refers to a tag's limits: no hand-over
    for rule in _undeclared(writer, LimitRuleRow, {r.name for r in governance.limits}, lambda r: r.id):
        _delete(writer, rule, "limit_rule", rule.id)  # nothing refers to a rule


def _undeclared(writer: EntityWriter, entity: type[T], declared: set[Any], key: Callable[[T], Any]) -> list[T]:
    rows = writer.session.scalars(select(entity).where(entity.managed_by == MANAGED_BY_CONFIG))
    return [row for row in rows if key(row) not in declared]


def _names(noun: str, ids: Iterable[str]) -> str:
    ids = list(ids)
    if not ids:
        return ""
    return f"{noun}{'s' if len(ids) > 1 else ''} {', '.join(map(repr, ids))}"


def _delete(writer: EntityWriter, row: Any, kind: str, ident: str) -> None:
    log.warning("config: %s %r is no longer in the config file: deleted (its usage is retained and comes back "
                "if it is declared again)", kind.replace("_", " "), ident)
    writer.delete(row, kind, ident, {"managed_by": MANAGED_BY_CONFIG, "reason": "removed from the config file"})


def _delete_or_hand_over(writer: EntityWriter, row: Any, kind: str, ident: str, users: str) -> None:
    if not users:
        _delete(writer, row, kind, ident)
        return
    log.warning("config: %s %r is no longer in the config file, but %s (managed through the API) still belong to "
                "it: it is kept and managed through the API from now on", kind, ident, users)
    diff: dict[str, Any] = {}
    assign(row, {"managed_by": MANAGED_BY_API}, diff)
    writer.record(row, kind, ident, diff)
