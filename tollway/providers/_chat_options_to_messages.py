"""OpenAI chat request options that need more than a copy to reach an Anthropic model:
``response_format``, ``reasoning_effort``, ``service_tier``, the user id, sampling limits.

Each function reads the chat body and completes the Anthropic body being built (``out``,
whose messages, max_tokens, tools and tool_choice are already set). Pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from tollway.providers._translate_common import FORMAT_TOOL, JSON, TranslationError

_TO_ANTHROPIC = "an Anthropic model"

# reasoning_effort → thinking budget_tokens. Anthropic's minimum budget is 1,024; the top
# stays within what every current Claude model can add to max_tokens (32k+ outputs).
EFFORT_BUDGET: Mapping[str, int] = MappingProxyType({
    "minimal": 1024, "low": 2048, "medium": 8192, "high": 16384, "xhigh": 24576, "max": 32000,
})

_SERVICE_TIER: Mapping[str, str] = MappingProxyType({"auto": "auto", "default": "standard_only"})
DEFAULT_MAX_TOKENS = 4096  # sent when the client gave no limit: Anthropic requires one


def apply_sampling(body: Mapping[str, Any], out: JSON) -> None:
    """temperature, top_p and stop, within Anthropic's limits."""
    temperature = body.get("temperature")
    if temperature is not None:
        if not isinstance(temperature, int | float) or isinstance(temperature, bool) or not 0 <= temperature <= 1:
            raise TranslationError(f"temperature={temperature!r} cannot be sent to {_TO_ANTHROPIC}, which accepts "
                                   "0 to 1", field="temperature")
        out["temperature"] = temperature
    if body.get("top_p") is not None:
        out["top_p"] = body["top_p"]
    stop = body.get("stop")
    if isinstance(stop, str):
        out["stop_sequences"] = [stop]
    elif isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        if stop:
            out["stop_sequences"] = list(stop)
    elif stop is not None:
        raise TranslationError("stop must be a string or an array of strings", field="stop")


def apply_response_format(body: Mapping[str, Any], out: JSON) -> None:
    """JSON answers as a forced call of `FORMAT_TOOL`, whose input is the answer.

    A forced tool works on every Claude model and guarantees a JSON object, which is what
    both ``json_object`` and ``json_schema`` promise; the response translators turn the
    call back into message content. When the client itself forces a tool call the answer
    is that call, so the format does not apply (as at OpenAI).
    """
    fmt = body.get("response_format")
    if fmt is None:
        return
    kind = fmt.get("type") if isinstance(fmt, Mapping) else None
    if kind == "text":
        return
    if kind == "json_schema":
        tool = _schema_tool(fmt.get("json_schema"))
    elif kind == "json_object":
        tool = {"name": FORMAT_TOOL, "description": _ANSWER_TOOL_DESCRIPTION, "input_schema": {"type": "object"}}
    else:
        raise TranslationError(f"response_format of type {kind!r} cannot be sent to {_TO_ANTHROPIC}",
                               field="response_format")
    choice: JSON = out.get("tool_choice") or {}
    if choice.get("type") in ("any", "tool"):
        return
    tools: list[JSON] = out.get("tools") or []
    if not tools or choice.get("type") == "none":
        out["tool_choice"] = {"type": "tool", "name": FORMAT_TOOL, "disable_parallel_tool_use": True}
    else:  # the model may call one of the client's tools, or answer through the format tool
        out["tool_choice"] = {"type": "any", **{k: v for k, v in choice.items() if k == "disable_parallel_tool_use"}}
    out["tools"] = [*tools, tool]


_ANSWER_TOOL_DESCRIPTION = ("Give your whole answer to the user by calling this tool: its input is the answer, "
                            "as JSON.")


def _schema_tool(spec: object) -> JSON:
    if not isinstance(spec, Mapping) or not isinstance(spec.get("name"), str):
        raise TranslationError("response_format.json_schema needs a name", field="response_format")
    schema = spec.get("schema") or {"type": "object"}
    if not isinstance(schema, Mapping) or schema.get("type") != "object":
        raise TranslationError(f"response_format.json_schema.schema must describe an object to be sent to "
                               f"{_TO_ANTHROPIC} (its answer is a tool input)", field="response_format")
    description = f"{_ANSWER_TOOL_DESCRIPTION} The answer follows the schema {spec['name']!r}."
    if isinstance(spec.get("description"), str) and spec["description"]:
        description += f" {spec['description']}"
    tool: JSON = {"name": FORMAT_TOOL, "description": description, "input_schema": dict(schema)}
    if spec.get("strict") is True:
        tool["strict"] = True  # Anthropic's strict tool use: the input is constrained to the schema
    return tool


def apply_reasoning(body: Mapping[str, Any], out: JSON) -> None:
    """reasoning_effort as an extended-thinking budget, max_tokens raised above it.

    OpenAI counts reasoning within max_completion_tokens and so does Anthropic within
    max_tokens, so a limit above the budget is kept; one at or below it gets the budget
    added (Anthropic requires budget_tokens < max_tokens). Anthropic allows no
    temperature, a top_p below 0.95 or a forced tool while thinking: those are refused.
    """
    effort = body.get("reasoning_effort")
    if effort is None or effort == "none":
        return
    budget = EFFORT_BUDGET.get(effort) if isinstance(effort, str) else None
    if budget is None:
        raise TranslationError(f"reasoning_effort {effort!r} is not one of none, {', '.join(EFFORT_BUDGET)}",
                               field="reasoning_effort")
    if out.get("temperature", 1) != 1:
        raise TranslationError(f"temperature cannot be combined with reasoning_effort on {_TO_ANTHROPIC}: "
                               "Claude thinks only at temperature 1; leave temperature out", field="temperature")
    if out.get("top_p", 1) < 0.95:
        raise TranslationError(f"top_p below 0.95 cannot be combined with reasoning_effort on {_TO_ANTHROPIC}",
                               field="top_p")
    if (out.get("tool_choice") or {}).get("type") in ("any", "tool"):
        client_forced = body.get("tool_choice") == "required" or isinstance(body.get("tool_choice"), Mapping)
        forced_by = "tool_choice" if client_forced else "response_format"
        raise TranslationError(f"{forced_by} cannot be combined with reasoning_effort on {_TO_ANTHROPIC}: it forces "
                               "a tool call, which Claude does not allow while thinking", field=forced_by)
    if _continues_a_tool_call(out["messages"]):
        raise TranslationError(f"reasoning_effort cannot continue a tool call on {_TO_ANTHROPIC}: while thinking, "
                               "Claude needs the thinking blocks of the turn that called the tool, which the chat "
                               "format cannot carry; send the turns that answer tool calls without reasoning_effort",
                               field="reasoning_effort")
    out["thinking"] = {"type": "enabled", "budget_tokens": budget}
    out["max_tokens"] += _raise_for(out["max_tokens"], budget)


def _continues_a_tool_call(messages: list[JSON]) -> bool:
    """Whether the last assistant turn called a tool (Anthropic then requires it to start
    with the thinking block it was given, when thinking is on)."""
    for message in reversed(messages):
        if message["role"] == "assistant":
            content = message["content"]
            return isinstance(content, list) and any(block.get("type") == "tool_use" for block in content)
    return False


def tokens_added_by_thinking(body: Mapping[str, Any], max_tokens: int | None) -> int:
    """How many tokens `apply_reasoning` adds to the client's limit (``max_tokens``, None
    for none given), so that the gateway can reserve them. Never raises: a bad value is
    refused by the translation itself."""
    effort = body.get("reasoning_effort")
    budget = EFFORT_BUDGET.get(effort, 0) if isinstance(effort, str) else 0
    return _raise_for(DEFAULT_MAX_TOKENS if max_tokens is None else max_tokens, budget) if budget else 0


def _raise_for(max_tokens: int, budget: int) -> int:
    return budget if max_tokens <= budget else 0


def apply_metadata(body: Mapping[str, Any], out: JSON) -> None:
    """safety_identifier (else user) → metadata.user_id; service_tier mapped."""
    for name in ("safety_identifier", "user"):
        value = body.get(name)
        if value is None:
            continue
        if not isinstance(value, str):
            raise TranslationError(f"{name} must be a string", field=name)
        if value:
            out["metadata"] = {"user_id": value}
            break
    tier = body.get("service_tier")
    if tier is not None:
        if tier not in _SERVICE_TIER:
            raise TranslationError(f"service_tier {tier!r} cannot be sent to {_TO_ANTHROPIC}, which offers "
                                   "auto and default only", field="service_tier")
        out["service_tier"] = _SERVICE_TIER[tier]
