"""Checks of the ids a body refers to, shared by the entity routes: owners (teams,
customers) must exist and providers must be configured. Unknown references are 422 with
the field that names them (the entity in the path is what gets 404)."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy.orm import Session

from tollway.api.errors import invalid
from tollway.config import Settings, provider_key_ids
from tollway.config.schema import ProviderConfigEntry
from tollway.store.tables import Customer, Team


def check_team(session: Session, team_id: str | None, field: str = "team_id") -> None:
    if team_id is not None and session.get(Team, team_id) is None:
        raise invalid(field, f"unknown team {team_id!r}")


def check_customer(session: Session, customer_id: str | None, field: str = "customer_id") -> None:
    if customer_id is not None and session.get(Customer, customer_id) is None:
        raise invalid(field, f"unknown customer {customer_id!r}")


def check_provider(settings: Settings, provider: str | None, field: str = "provider") -> None:
    if provider is not None and provider not in settings.providers:
        configured = ", ".join(sorted(settings.providers)) or "none"
        raise invalid(field, f"unknown provider {provider!r} (configured: {configured})")


def check_provider_configs(settings: Settings, configs: Iterable[ProviderConfigEntry]) -> None:
    """Each config names a configured provider, and only key ids that provider has."""
    for index, config in enumerate(configs):
        where = f"provider_configs[{index}]"
        check_provider(settings, config.provider, f"{where}.provider")
        key_ids = provider_key_ids(settings, config.provider)
        for name in config.allowed_keys:
            if name not in key_ids:
                raise invalid(f"{where}.allowed_keys",
                              f"unknown key id {name!r} of provider {config.provider!r} (its keys: {', '.join(key_ids)})")
