"""HTML form fields to management API bodies, and API errors to sentences.

Only the shape is translated here (empty fields, lists, check boxes); the values are
checked by the API itself, whose messages are shown next to the form. The one check
made here is structural: a limit is given whole (amount and period) or left empty.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl

from tollway.ui.client import ApiProblem

MAX_FORM_BYTES = 256 * 1024
_SPLIT = re.compile(r"[\s,]+")


class FormError(Exception):
    """A form that cannot become an API body; ``field`` is the API field it concerns."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.problem = ApiProblem(422, f"{field}: {message}", [{"field": field, "message": message}], field)


class Form:
    """A submitted url-encoded form."""

    def __init__(self, pairs: Iterable[tuple[str, str]]) -> None:
        self._pairs = list(pairs)
        self._first: dict[str, str] = {}
        for name, value in self._pairs:
            self._first.setdefault(name, value)

    @classmethod
    def parse(cls, body: bytes) -> Form:
        return cls(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))

    def get(self, name: str, default: str = "") -> str:
        return self._first.get(name, default).strip()

    def getlist(self, name: str) -> list[str]:
        return [value for key, value in self._pairs if key == name]

    def checked(self, name: str) -> bool:
        return name in self._first

    def values(self) -> dict[str, str]:
        """The first value of each field, to fill the form again after an error."""
        return dict(self._first)

    def __contains__(self, name: str) -> bool:
        return name in self._first


def split_list(text: str) -> list[str]:
    """Names separated by commas, spaces or new lines."""
    return [item for item in _SPLIT.split(text) if item]


def _pair(form: Form, amount: str, period: str, field: str, what: str) -> tuple[str, str] | None:
    limit, duration = form.get(amount), form.get(period)
    if not limit and not duration:
        return None
    if not limit or not duration:
        missing = "amount" if not limit else "reset period"
        raise FormError(field, f"{what}: give both an amount and a reset period (the {missing} is empty), "
                               "or leave both empty for no limit")
    return limit, duration


def budget(form: Form, prefix: str = "", where: str = "budget") -> dict[str, Any] | None:
    """The budget a form states (``None``: no budget)."""
    given = _pair(form, f"{prefix}budget_max_limit", f"{prefix}budget_reset_duration", where, "budget")
    if given is None:
        return None
    return _with_mode(form, prefix, "budget", {"max_limit": given[0], "reset_duration": given[1],
                                               "calendar_aligned": form.checked(f"{prefix}budget_calendar_aligned"),
                                               **_modes(form, f"{prefix}budget_")})


def _modes(form: Form, prefix: str) -> dict[str, str | None]:
    """``enforcement`` and ``on_insufficient`` where the form has them (empty: the global
    default, sent as null); a form without them leaves the stored modes alone."""
    return {name: form.get(f"{prefix}{name}") or None for name in ("enforcement", "on_insufficient")
            if f"{prefix}{name}" in form}


def rate_limit(form: Form, prefix: str = "", where: str = "rate_limit") -> dict[str, Any] | None:
    """The rate limit a form states (``None``: no rate limit); an empty side is removed."""
    body: dict[str, Any] = {}
    for side, what in (("token", "token limit"), ("request", "request limit")):
        given = _pair(form, f"{prefix}{side}_max_limit", f"{prefix}{side}_reset_duration",
                      f"{where}.{side}_max_limit", what)
        body[f"{side}_max_limit"], body[f"{side}_reset_duration"] = given if given else (None, None)
    if all(value is None for value in body.values()):
        return None
    return _with_mode(form, prefix, "rate_limit", body | _modes(form, f"{prefix}rate_"))


def concurrency(form: Form, prefix: str = "", where: str = "concurrency") -> dict[str, Any] | None:
    """The concurrency limit a form states (``None``: no limit); the queue wait needs a maximum."""
    limit, wait = form.get(f"{prefix}max_in_flight"), form.get(f"{prefix}queue_timeout_ms")
    if not limit:
        if wait and wait != "0":
            raise FormError(f"{where}.max_in_flight", "concurrency: a queue wait needs a maximum of requests "
                                                      "in flight, or leave both empty for no limit")
        return None
    return _with_mode(form, prefix, "concurrency", {"max_in_flight": limit, "queue_timeout_ms": wait or 0})


def _with_mode(form: Form, prefix: str, which: str, body: dict[str, Any]) -> dict[str, Any]:
    """``body`` with the limit's ``mode`` (shadow when its box is ticked), when the form
    showed the shadow boxes at all: a form without them leaves the stored mode alone."""
    if form.checked(f"{prefix}modes_shown"):
        body["mode"] = "shadow" if form.checked(f"{prefix}{which}_shadow") else "enforce"
    return body


def owner(form: Form) -> dict[str, str | None]:
    """``team:<id>``, ``customer:<id>`` or nothing, as team_id and customer_id."""
    kind, _, ident = form.get("owner").partition(":")
    return {"team_id": ident if kind == "team" and ident else None,
            "customer_id": ident if kind == "customer" and ident else None}


def provider_configs(form: Form) -> list[dict[str, Any]]:
    """The complete list of a key's provider configs: one per provider ticked."""
    configs = []
    for index in range(len(form.getlist("pc_provider"))):
        prefix = f"pc{index}_"
        if not form.checked(f"{prefix}enabled"):
            continue
        provider = form.getlist("pc_provider")[index].strip()
        where = f"provider_configs[{provider}]"
        config: dict[str, Any] = {
            "provider": provider, "weight": form.get(f"{prefix}weight") or 1,
            "allowed_models": split_list(form.get(f"{prefix}allowed_models")),
            "allowed_keys": split_list(form.get(f"{prefix}allowed_keys")),
            "budget": budget(form, prefix, f"{where}.budget"),
            "rate_limit": rate_limit(form, prefix, f"{where}.rate_limit"),
            "concurrency": concurrency(form, prefix, f"{where}.concurrency"),
        }
        configs.append(config)
    return configs


_LABELS = {
    "max_limit": "amount (USD)", "reset_duration": "reset period", "token_max_limit": "tokens",
    "token_reset_duration": "token reset period", "request_max_limit": "requests",
    "request_reset_duration": "request reset period", "allowed_models": "allowed models",
    "team_id": "team", "customer_id": "customer", "model_name": "model", "rate_limit": "rate limit",
    "provider_configs": "provider configs", "calendar_aligned": "calendar aligned", "id": "id",
    "max_in_flight": "requests in flight", "queue_timeout_ms": "queue wait (ms)",
    "allowed_tags": "allowed tags", "forced_tags": "forced tags",
}


def field_label(field: str) -> str:
    """``provider_configs[0].budget.max_limit`` as "provider configs 1 › budget › amount (USD)"."""
    parts = []
    for part in field.replace("]", "").split("."):
        name, _, index = part.partition("[")
        label = _LABELS.get(name, name.replace("_", " "))
        parts.append(f"{label} {int(index) + 1}" if index.isdigit() else f"{label} {index}" if index else label)
    return " › ".join(parts)


def name_configs(problem: ApiProblem, configs: list[dict[str, Any]]) -> ApiProblem:
    """The problem with ``provider_configs[i]`` named by provider, as the form shows them."""
    def rename(field: str | None) -> str | None:
        if not field:
            return field
        for index, config in enumerate(configs):
            field = field.replace(f"provider_configs[{index}]", f"provider_configs[{config['provider']}]")
        return field

    details = [{**d, "field": rename(d.get("field")) or ""} for d in problem.details]
    return ApiProblem(problem.status, problem.message, details, rename(problem.field))


def problem_lines(problem: ApiProblem) -> list[str]:
    """One sentence per thing the API found wrong, with fields named as on the form."""
    if problem.details:
        return [f"{field_label(d['field'])}: {d['message']}" if d.get("field") else d["message"]
                for d in problem.details]
    return [problem.message]


def problem_title(problem: ApiProblem, action: str) -> str:
    """A headline for a failed ``action`` ("save the key"), by the kind of failure."""
    if problem.status in (400, 422):
        return f"Could not {action}: please correct the highlighted values."
    if problem.status == 404:
        return f"Could not {action}: it no longer exists."
    if problem.status == 409:
        return f"Could not {action}: it conflicts with what is already there."
    if problem.status == 503:
        return f"Could not {action}: the gateway's config store or management API is unavailable."
    if problem.status in (401, 403):
        return f"Could not {action}: the gateway refused the admin session."
    return f"Could not {action}: the gateway failed (HTTP {problem.status})."
