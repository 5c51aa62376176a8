"""Reading `tollway.yaml`: `env.NAME` substitution, validation, errors that name the field.

This is the one module that reads the process environment for configuration values.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from tollway.config.schema import Settings

CONFIG_PATH_VARIABLE = "TOLLWAY_CONFIG"
ADMIN_TOKEN_VARIABLE = "TOLLWAY_ADMIN_TOKEN"  # used when the file sets no admin_token
_ENV_REF = re.compile(r"^env\.([A-Za-z_][A-Za-z0-9_]*)$")


class ConfigError(Exception):
    """A configuration problem, worded as "FILE: PATH: PROBLEM" lines."""

    def __init__(self, source: str, problems: list[tuple[str, str]]) -> None:
        self.source = source
        self.problems = problems
        lines = [f"{source}: {path or '(top level)'}: {problem}" for path, problem in problems]
        super().__init__("\n".join(lines))


def load_settings(path: str | Path, environ: Mapping[str, str] | None = None) -> Settings:
    """Read, substitute and validate a YAML or JSON config file."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(source, [("", f"cannot read the file: {exc.strerror or exc}")]) from exc
    try:
        raw = json.loads(text) if source.endswith(".json") else yaml.safe_load(text)
    except (yaml.YAMLError, json.JSONDecodeError) as exc:
        raise ConfigError(source, [("", f"not valid YAML/JSON: {exc}")]) from exc
    return settings_from_dict(raw or {}, source, environ)


def settings_from_environment() -> Settings:
    """The settings of the file named by $TOLLWAY_CONFIG (how `serve` hands them to workers)."""
    path = os.environ.get(CONFIG_PATH_VARIABLE)
    if not path:
        raise ConfigError("<environment>", [(CONFIG_PATH_VARIABLE, "not set: start workers with `tollway serve`")])
    return load_settings(path)


def settings_from_dict(
    raw: Any, source: str = "<config>", environ: Mapping[str, str] | None = None
) -> Settings:
    """Validate an already parsed config mapping (used by tests and the demo)."""
    if not isinstance(raw, dict):
        raise ConfigError(source, [("", "the top level must be a mapping of settings")])
    env = os.environ if environ is None else environ
    problems: list[tuple[str, str]] = []
    resolved = _substitute(raw, env, "", problems)
    if "egress" not in resolved:
        resolved["egress"] = _egress_from(env)
    if problems:
        raise ConfigError(source, problems)
    try:
        settings = Settings.model_validate(resolved)
    except ValidationError as exc:
        raise ConfigError(source, [(_loc(e["loc"]), _message(e)) for e in exc.errors()]) from None
    problems = list(_reference_problems(settings))
    if problems:
        raise ConfigError(source, problems)
    if settings.admin_token is None and env.get(ADMIN_TOKEN_VARIABLE):
        settings = settings.model_copy(update={"admin_token": env[ADMIN_TOKEN_VARIABLE]})
    return settings


def _egress_from(env: Mapping[str, str]) -> dict[str, str | None]:
    """The proxy variables as curl and most HTTP clients read them (lower case first)."""
    return {name: env.get(name) or env.get(name.upper()) or None for name in ("http_proxy", "https_proxy", "no_proxy")}


def _substitute(value: Any, env: Mapping[str, str], path: str, problems: list) -> Any:
    if isinstance(value, str):
        match = _ENV_REF.match(value)
        if match is None:
            return value
        name = match.group(1)
        if name not in env:
            problems.append((path, f"environment variable {name} is not set"))
            return value
        return env[name]
    if isinstance(value, dict):
        return {k: _substitute(v, env, _join(path, str(k)), problems) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, env, f"{path}[{i}]", problems) for i, v in enumerate(value)]
    return value


def _reference_problems(settings: Settings) -> Iterator[tuple[str, str]]:
    """Cross-entity checks that one model cannot make on its own."""
    gov = settings.governance
    providers = settings.providers
    yield from _duplicates("governance.customers", [c.id for c in gov.customers])
    yield from _duplicates("governance.teams", [t.id for t in gov.teams])
    yield from _duplicates("governance.virtual_keys", [k.id for k in gov.virtual_keys])
    values = [k.value for k in gov.virtual_keys if k.value]
    if len(set(values)) != len(values):
        yield "governance.virtual_keys", "two virtual keys have the same value"
    customers = {c.id for c in gov.customers}
    teams = {t.id for t in gov.teams}
    for i, team in enumerate(gov.teams):
        if team.customer_id and team.customer_id not in customers:
            yield f"governance.teams[{i}].customer_id", f"unknown customer {team.customer_id!r}"
    for i, key in enumerate(gov.virtual_keys):
        where = f"governance.virtual_keys[{i}]"
        if key.team_id and key.team_id not in teams:
            yield f"{where}.team_id", f"unknown team {key.team_id!r}"
        if key.customer_id and key.customer_id not in customers:
            yield f"{where}.customer_id", f"unknown customer {key.customer_id!r}"
        for j, pc in enumerate(key.provider_configs):
            if pc.provider not in providers:
                yield f"{where}.provider_configs[{j}].provider", f"unknown provider {pc.provider!r}"
                continue
            key_ids = provider_key_ids(settings, pc.provider)
            for name in pc.allowed_keys:
                if name not in key_ids:
                    yield f"{where}.provider_configs[{j}].allowed_keys", f"unknown key id {name!r} of provider {pc.provider!r}"
    pairs = [(m.model_name, m.provider) for m in gov.model_configs]
    for i, model in enumerate(gov.model_configs):
        if model.provider and model.provider not in providers:
            yield f"governance.model_configs[{i}].provider", f"unknown provider {model.provider!r}"
        if pairs.index((model.model_name, model.provider)) != i:
            yield f"governance.model_configs[{i}]", f"duplicate of ({model.model_name}, {model.provider})"
    for alias, target in settings.model_aliases.items():
        provider = target.split("/", 1)[0]
        if "/" not in target or provider not in providers:
            yield f"model_aliases.{alias}", f"target {target!r} must be 'provider/model' with a configured provider"
    for name, targets in settings.fallbacks.items():
        for i, target in enumerate(targets):
            if target not in settings.model_aliases and target.split("/", 1)[0] not in providers:
                yield f"fallbacks.{name}[{i}]", f"unknown provider or alias in {target!r}"
    for name, provider in providers.items():
        yield from _duplicates(f"providers.{name}.keys", provider_key_ids(settings, name))


def provider_key_ids(settings: Settings, provider: str) -> list[str]:
    """Each provider key's id: its configured id, or key-<index>."""
    return [k.id or f"key-{i}" for i, k in enumerate(settings.providers[provider].keys)]


def _duplicates(path: str, ids: list[str]) -> Iterator[tuple[str, str]]:
    seen: set[str] = set()
    for i, ident in enumerate(ids):
        if ident in seen:
            yield f"{path}[{i}]", f"duplicate id {ident!r}"
        seen.add(ident)


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _loc(loc: tuple) -> str:
    path = ""
    for part in loc:
        path = f"{path}[{part}]" if isinstance(part, int) else _join(path, str(part))
    return path


def _message(error: Mapping[str, Any]) -> str:
    message = str(error.get("msg", "invalid"))
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    if error.get("type") == "extra_forbidden":
        return "unknown field (check the spelling)"
    return message


def config_file_path() -> str | None:
    """The config file `tollway serve` was started with (absolute), when there is one: for
    messages that send an operator to it."""
    return os.environ.get(CONFIG_PATH_VARIABLE) or None
