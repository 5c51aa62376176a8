"""The management API's side of ownership (`tollway.store.ownership`): entities the
config file manages are read-only here, except for resetting their usage.

Every route that changes or deletes an entity calls `refuse_config_managed` on it (and
on whatever a cascading delete would take with it) before writing anything, so a
refused request writes nothing.
"""

from __future__ import annotations

from typing import Any

from tollway.api.errors import ApiError
from tollway.config.loader import config_file_path
from tollway.store.tables import MANAGED_BY_CONFIG

MANAGED_BY_CONFIG_ERROR = "managed_by_config"
_SECTIONS = {"virtual key": "governance.virtual_keys", "team": "governance.teams", "customer": "governance.customers",
             "model config": "governance.model_configs", "provider": "providers", "tag": "governance.tags",
             "limit rule": "governance.limits"}


def is_config_managed(row: Any) -> bool:
    return bool(row.managed_by == MANAGED_BY_CONFIG)


def refuse_config_managed(row: Any, label: str, ident: str, what: str = "changed or deleted") -> None:
    """409 ``managed_by_config`` when the config file manages ``row`` (a ``label``)."""
    if is_config_managed(row):
        raise managed_by_config(label, ident, what)


def managed_by_config(label: str, ident: str, what: str = "changed or deleted") -> ApiError:
    path = config_file_path()
    where = f"the config file ({path})" if path else "the config file"
    section = _SECTIONS.get(label, "governance")
    return ApiError(
        409,
        f"{label} {ident!r} is managed by {where}, so it cannot be {what} here: edit it in the file's "
        f"`{section}` section and restart the gateway (resetting its usage is allowed here)",
        kind=MANAGED_BY_CONFIG_ERROR,
    )
