"""Reading `tollway.yaml`: `env.NAME` substitution, validation, errors that name the field.

This is the one module that reads the process environment for configuration values.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import types
import typing
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from tollway.config.schema import Settings
from tollway.governance.names import model_key

CONFIG_PATH_VARIABLE = "TOLLWAY_CONFIG"
ADMIN_TOKEN_VARIABLE = "TOLLWAY_ADMIN_TOKEN"  # used when the file sets no admin_token
_ENV_REF = re.compile(r"^env\.([A-Za-z_][A-Za-z0-9_]*)$")
_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"


class _TextDatesLoader(yaml.SafeLoader):
    """YAML's safe loader, except that a date or time written without quotes stays the
    text as written: no setting is a date, and `api_version: 2024-06-01` or a header
    `anthropic-version: 2023-06-01` must reach the provider as that string."""


_TextDatesLoader.yaml_implicit_resolvers = {
    first: [(tag, pattern) for tag, pattern in resolvers if tag != _TIMESTAMP_TAG]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


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
        raw = json.loads(text) if source.endswith(".json") else parse_yaml(text)
    except (yaml.YAMLError, json.JSONDecodeError) as exc:
        raise ConfigError(source, [("", f"not valid YAML/JSON: {exc}")]) from exc
    settings = settings_from_dict(raw or {}, source, environ)
    return with_sqlite_path_resolved(settings, Path(path).resolve().parent)


def parse_yaml(text: str) -> Any:
    """YAML as the config file reads it: dates and times stay text (see _TextDatesLoader)."""
    return yaml.load(text, Loader=_TextDatesLoader)  # a SafeLoader subclass: no arbitrary objects


def with_sqlite_path_resolved(settings: Settings, folder: Path) -> Settings:
    """A relative SQLite path (`sqlite:///tollway.db`, the default too) is taken relative to
    the config file's folder, not to wherever the command happens to run."""
    url = settings.database_url
    scheme, separator, database = url.partition(":///")
    if not separator or scheme not in ("sqlite", "sqlite+aiosqlite"):
        return settings
    path, query_mark, query = database.partition("?")
    if not path or path == ":memory:" or path.startswith("/") or Path(path).is_absolute():
        return settings
    resolved = f"{scheme}:///{(folder / path).resolve()}{query_mark}{query}"
    return settings.model_copy(update={"database_url": resolved})


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
        raise ConfigError(source, [(_loc(e["loc"]), _message(e)) for e in exc.errors(include_url=False)]) from None
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
            yield f"governance.teams[{i}].customer_id", (
                f"unknown customer {team.customer_id!r}{_nearest(team.customer_id, customers)}")
    for i, key in enumerate(gov.virtual_keys):
        where = f"governance.virtual_keys[{i}]"
        if key.team_id and key.team_id not in teams:
            yield f"{where}.team_id", f"unknown team {key.team_id!r}{_nearest(key.team_id, teams)}"
        if key.customer_id and key.customer_id not in customers:
            yield f"{where}.customer_id", f"unknown customer {key.customer_id!r}{_nearest(key.customer_id, customers)}"
        for j, pc in enumerate(key.provider_configs):
            if pc.provider not in providers:
                yield (f"{where}.provider_configs[{j}].provider",
                       f"unknown provider {pc.provider!r}{_nearest(pc.provider, providers)}")
                continue
            key_ids = provider_key_ids(settings, pc.provider)
            for name in pc.allowed_keys:
                if name not in key_ids:
                    yield f"{where}.provider_configs[{j}].allowed_keys", f"unknown key id {name!r} of provider {pc.provider!r}"
    # Model names are matched without regard to case (tollway.governance.names), so two
    # configs that differ only in case would be one model with two sets of limits.
    # Names were trimmed and NFKC-normalised when the file was read (ModelLimitConfig).
    pairs = [(model_key(m.model_name), m.provider) for m in gov.model_configs]
    for i, model in enumerate(gov.model_configs):
        if model.provider and model.provider not in providers:
            yield f"governance.model_configs[{i}].provider", (
                f"unknown provider {model.provider!r}{_nearest(model.provider, providers)}")
        first = pairs.index((model_key(model.model_name), model.provider))
        if first != i:
            other = gov.model_configs[first]
            yield f"governance.model_configs[{i}].model_name", (
                f"{model.model_name!r} on {model.provider or 'any provider'} is the same model as "
                f"governance.model_configs[{first}] ({other.model_name!r}): model names are matched trimmed, "
                "NFKC-normalised and without regard to case; keep one")
    for alias, target in settings.model_aliases.items():
        provider = target.split("/", 1)[0]
        if "/" not in target or provider not in providers:
            yield f"model_aliases.{alias}", f"target {target!r} must be 'provider/model' with a configured provider"
    for name, targets in settings.fallbacks.items():
        for i, target in enumerate(targets):
            if target not in settings.model_aliases and target.split("/", 1)[0] not in providers:
                yield f"fallbacks.{name}[{i}]", f"unknown provider or alias in {target!r}"
    for name in providers:
        yield from _duplicates(f"providers.{name}.keys", provider_key_ids(settings, name))


def _nearest(name: str, known: Iterable[str]) -> str:
    """"; did you mean 'x'?" when a known id is close to ``name`` (a typo), else ""."""
    close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


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
    kind = error.get("type")
    if kind == "extra_forbidden":
        return _unknown_field(tuple(error.get("loc", ())))
    if kind == "string_type" and isinstance(error.get("input"), (bool, int, float)):
        value = error["input"]
        return (f"must be text, and YAML read this value as {type(value).__name__} {value!r}: "
                "put it in quotes (e.g. '0613', 'no', 'on')")
    return message


def config_file_path() -> str | None:
    """The config file `tollway serve` was started with (absolute), when there is one: for
    messages that send an operator to it."""
    return os.environ.get(CONFIG_PATH_VARIABLE) or None


def _unknown_field(loc: tuple) -> str:
    """"unknown field", with the nearest valid name when one is close (a typo)."""
    name = str(loc[-1]) if loc else ""
    model = _model_at(Settings, loc[:-1])
    if model is None:
        return "unknown field (check the spelling)"
    valid = list(model.model_fields)
    nearest = difflib.get_close_matches(name, valid, n=1, cutoff=0.6)
    if nearest:
        return f"unknown field {name!r}; did you mean {nearest[0]!r}?"
    return f"unknown field {name!r}; valid fields here: {', '.join(valid)}"


def _model_at(model: type[BaseModel], loc: tuple) -> type[BaseModel] | None:
    """The model that validates the value at ``loc`` (a validation error's path)."""
    annotation: Any = model
    for part in loc:
        annotation = _unwrap(annotation, part)
        if annotation is None:
            return None
    annotation = _unwrap_optional(annotation)
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def _unwrap(annotation: Any, part: Any) -> Any:
    annotation = _unwrap_optional(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        field = annotation.model_fields.get(str(part))
        return field.annotation if field is not None else None
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is list and args:
        return args[0] if isinstance(part, int) else None
    if origin is dict and len(args) == 2:
        return args[1]
    return None


def _unwrap_optional(annotation: Any) -> Any:
    """`X | None` and `Annotated[X, ...]` -> X (the model that validates the value)."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            options = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(options) != 1:
                return annotation
            annotation = options[0]
        else:
            return annotation
