"""Anthropic messages request options that need more than a copy to reach an OpenAI model:
``stop_sequences``, ``thinking``, ``output_config``, ``service_tier``, ``metadata``.

Each function reads the messages body and completes the chat body being built (``out``,
whose messages and max_tokens are already set). Pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from tollway.providers._translate_common import JSON, TranslationError

_TO_OPENAI = "an OpenAI model"
MAX_STOP = 4  # OpenAI's limit on stop sequences

# thinking.budget_tokens → reasoning_effort: the effort whose budget (EFFORT_BUDGET in the
# other direction: low 2,048, medium 8,192, high 16,384) is the nearest from below.
_EFFORT_BY_BUDGET = ((16384, "high"), (4096, "medium"), (0, "low"))
_EFFORTS = frozenset({"low", "medium", "high", "xhigh", "max"})
_SERVICE_TIER: Mapping[str, str] = MappingProxyType({"auto": "auto", "standard_only": "default"})


def apply_stop(body: Mapping[str, Any], out: JSON) -> None:
    stop = body.get("stop_sequences")
    if stop is None:
        return
    if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
        raise TranslationError("stop_sequences must be an array of strings", field="stop_sequences")
    if len(stop) > MAX_STOP:
        raise TranslationError(f"stop_sequences has {len(stop)} entries; {_TO_OPENAI} takes at most {MAX_STOP}",
                               field="stop_sequences")
    if stop:
        out["stop"] = list(stop)


def apply_reasoning(body: Mapping[str, Any], out: JSON) -> None:
    """thinking and output_config.effort as reasoning_effort; output_config.format as response_format.

    OpenAI reasoning models take their limit as max_completion_tokens (which, like
    Anthropic's max_tokens while thinking, counts the reasoning), so it is renamed.
    """
    effort = _thinking_effort(body.get("thinking"))
    config = body.get("output_config")
    if config is not None:
        if not isinstance(config, Mapping) or not set(config) <= {"effort", "format"}:
            raise TranslationError(f"output_config may hold only effort and format to be sent to {_TO_OPENAI}",
                                   field="output_config")
        if config.get("effort") is not None:
            if config["effort"] not in _EFFORTS:
                raise TranslationError(f"output_config.effort {config['effort']!r} is not one of "
                                       f"{', '.join(sorted(_EFFORTS))}", field="output_config")
            effort = config["effort"]
        if config.get("format") is not None:
            out["response_format"] = _response_format(config["format"])
    if effort is not None:
        out["reasoning_effort"] = effort
        if "max_tokens" in out:
            out["max_completion_tokens"] = out.pop("max_tokens")


def _thinking_effort(thinking: object) -> str | None:
    if thinking is None:
        return None
    kind = thinking.get("type") if isinstance(thinking, Mapping) else None
    if kind in ("disabled", "adaptive"):
        return None  # no reasoning_effort: the model's own default, as adaptive asks and a chat model does
    budget = thinking.get("budget_tokens") if isinstance(thinking, Mapping) else None
    if kind != "enabled" or not isinstance(budget, int) or isinstance(budget, bool):
        raise TranslationError(f"thinking of type {kind!r} cannot be sent to {_TO_OPENAI}; use enabled with "
                               "budget_tokens, adaptive or disabled", field="thinking")
    return next(effort for floor, effort in _EFFORT_BY_BUDGET if budget >= floor)


def _response_format(fmt: object) -> JSON:
    if not isinstance(fmt, Mapping) or fmt.get("type") != "json_schema" or not isinstance(fmt.get("schema"), Mapping):
        raise TranslationError("output_config.format must be {type: json_schema, schema: {...}}", field="output_config")
    # Anthropic's structured output is always constrained to the schema, as OpenAI's strict mode is.
    return {"type": "json_schema", "json_schema": {"name": "answer", "schema": fmt["schema"], "strict": True}}


def apply_metadata(body: Mapping[str, Any], out: JSON) -> None:
    """metadata.user_id → user; service_tier mapped."""
    metadata = body.get("metadata")
    if metadata is not None:
        if not isinstance(metadata, Mapping) or not set(metadata) <= {"user_id"}:
            raise TranslationError("metadata may hold only user_id", field="metadata")
        user = metadata.get("user_id")
        if user is not None and not isinstance(user, str):
            raise TranslationError("metadata.user_id must be a string", field="metadata")
        if user:
            out["user"] = user
    tier = body.get("service_tier")
    if tier is not None:
        if tier not in _SERVICE_TIER:
            raise TranslationError(f"service_tier {tier!r} is not one of auto, standard_only", field="service_tier")
        out["service_tier"] = _SERVICE_TIER[tier]
