"""How a governance denial reads on the wire, in each client API's shape: the one place
that turns a `Denial` (plain data from the pure governance core) into JSON.

OpenAI's shape is ``{"error": {…}}``, Anthropic's ``{"type": "error", "error": {…}}``
(SDKs of either surface ``error.message``), Google's its ``{"error": {"code", "status",
"details": [ErrorInfo]}}`` with Tollway's fields in the details' metadata, AWS's (Bedrock's own
routes) ``{"__type", "message"}`` with Tollway's code as ``reason`` and its fields beside.
"""

from __future__ import annotations

from typing import Any

import orjson

from tollway.governance.decisions import Decision, Denial, iso_utc
from tollway.governance.model import NANO_PER_USD
from tollway.providers.adapters.bedrock_errors import aws_error_body
from tollway.providers.adapters.gemini_response import google_error_from
from tollway.providers.apis import Api


def error_fields(denial: Denial) -> dict[str, Any]:
    """The error object every shape carries: type and code (the decision), the message, the
    scope that denied, and the limit's figures (budgets in USD) with its reset time."""
    money = denial.decision is Decision.BUDGET_EXCEEDED
    scope = denial.scope
    return {
        "type": denial.decision.value,
        "code": denial.decision.value,
        "message": denial.message,
        "scope": None if scope is None else {"level": scope.level.value, "id": scope.id, "name": scope.name},
        "limit": _amount(denial.limit, money),
        "used": _amount(denial.used, money),
        "spent": None if denial.used is None else _amount(denial.used - (denial.reserved or 0), money),
        "reserved": _amount(denial.reserved, money),
        "requested": _amount(denial.requested, money),
        "reset_at": None if denial.reset_at_ms is None else iso_utc(denial.reset_at_ms),
    }


def error_body(denial: Denial, anthropic: bool = False) -> bytes:
    """The body in OpenAI's shape, or Anthropic's."""
    error = error_fields(denial)
    return orjson.dumps({"type": "error", "error": error} if anthropic else {"error": error})


def denial_body(denial: Denial, api: Api) -> bytes:
    """The body in the shape clients of ``api`` expect."""
    if api.aws_shaped:  # AWS's type for the status, Tollway's fields beside it
        fields = error_fields(denial)
        del fields["type"]
        return aws_error_body(denial.decision.status, fields.pop("message"), fields.pop("code"), **fields)
    body = error_body(denial, anthropic=api.anthropic_shaped)
    return google_error_from(denial.decision.status, body) if api.google_shaped else body


def _amount(value: int | None, money: bool) -> int | float | None:
    if value is None or not money:
        return value
    return value / NANO_PER_USD


__all__ = ["denial_body", "error_body", "error_fields"]
