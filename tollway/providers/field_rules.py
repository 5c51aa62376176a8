"""What happens to each request field when a request crosses from one API to the other.

One table per direction, consulted by the translators before they translate and walked
by the tests, so no field can be dropped without a decision. Every top-level field of a
translated request is one of:

- ``TRANSLATE``: the translator carries it over faithfully (the reason says how);
- ``REFUSE``: answered 400 naming the field and the provider's API, unless its value is
  one of ``neutral`` (the value that changes nothing, e.g. ``n=1``, ``logprobs=false``);
- ``IGNORE``: accepted and not sent, only where it cannot change the answer (the reason
  says why).

A field that is in neither table is refused: a translated request never drops a field
nobody decided on. Same-API passthrough does not consult these tables (the provider
reads the body as the client wrote it). ``null`` means "not given" in both APIs and is
accepted for every field.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from types import MappingProxyType
from typing import Any

from tollway.providers._translate_common import TranslationError


class Action(Enum):
    TRANSLATE = "translate"
    REFUSE = "refuse"
    IGNORE = "ignore"


@dataclass(frozen=True, slots=True)
class FieldRule:
    action: Action
    reason: str
    neutral: tuple[Any, ...] = ()  # values of a REFUSE field that have no effect and are accepted


def rule(action: Action, reason: str, *neutral: Any) -> FieldRule:
    """A rule of a translator's field table (the adapters' request translators share it)."""
    return FieldRule(action, reason, neutral)


def _translate(reason: str) -> FieldRule:
    return FieldRule(Action.TRANSLATE, reason)


def _refuse(reason: str, *neutral: Any) -> FieldRule:
    return FieldRule(Action.REFUSE, reason, neutral)


def _ignore(reason: str) -> FieldRule:
    return FieldRule(Action.IGNORE, reason)


_CACHE_HINT = "a prompt-cache hint: it changes cost and latency, never the answer"

# An OpenAI chat completions request sent to an Anthropic model.
CHAT_TO_MESSAGES: Mapping[str, FieldRule] = MappingProxyType({
    "model": _translate("replaced by the provider's model name"),
    "messages": _translate("system/developer → system; tool messages → tool_result blocks; "
                           "turns merged to alternate"),
    "max_completion_tokens": _translate("→ max_tokens (raised by the thinking budget when reasoning_effort asks)"),
    "max_tokens": _translate("→ max_tokens when max_completion_tokens is absent"),
    "temperature": _translate("→ temperature; Anthropic accepts 0–1, so a higher value is refused"),
    "top_p": _translate("→ top_p, the same nucleus sampling"),
    "stop": _translate("→ stop_sequences"),
    "stream": _translate("→ stream; the events are translated back to chunks"),
    "stream_options": _translate("include_usage decides the usage chunk; include_obfuscation only pads chunks"),
    "tools": _translate("function tools → tools with input_schema"),
    "tool_choice": _translate("auto/none/required/function → auto/none/any/tool"),
    "parallel_tool_calls": _translate("false → tool_choice.disable_parallel_tool_use"),
    "user": _translate("→ metadata.user_id"),
    "safety_identifier": _translate("→ metadata.user_id (it replaces user; wins over it)"),
    "reasoning_effort": _translate("→ thinking with a budget per effort; none → no thinking"),
    "response_format": _translate("json_schema/json_object → a forced tool whose input is the answer; "
                                  "the tool call comes back as the message content"),
    "service_tier": _translate("auto → auto, default → standard_only; flex/priority/scale are refused"),
    "n": _refuse("Anthropic models return one choice", 1),
    "audio": _refuse("Anthropic models do not answer with audio"),
    "modalities": _refuse("Anthropic models answer with text only", ["text"]),
    "frequency_penalty": _refuse("Anthropic has no frequency penalty", 0),
    "presence_penalty": _refuse("Anthropic has no presence penalty", 0),
    "logit_bias": _refuse("Anthropic has no logit bias", {}),
    "logprobs": _refuse("Anthropic returns no token log probabilities", False),
    "top_logprobs": _refuse("Anthropic returns no token log probabilities", 0),
    "seed": _refuse("Anthropic has no seed for reproducible sampling"),
    "verbosity": _refuse("Anthropic has no verbosity setting", "medium"),
    "store": _refuse("completions cannot be stored at OpenAI when Anthropic answers", False),
    "functions": _refuse("deprecated function calling: send tools instead"),
    "function_call": _refuse("deprecated function calling: send tool_choice instead"),
    "web_search_options": _refuse("OpenAI's web search has no Anthropic equivalent of the same shape"),
    "moderation": _refuse("OpenAI's moderation of input and output has no Anthropic equivalent"),
    "metadata": _ignore("tags stored completions in OpenAI's dashboard; nothing in the answer depends on it"),
    "prediction": _ignore("predicted outputs only speed up an answer that stays the same"),
    "prompt_cache_key": _ignore(_CACHE_HINT),
    "prompt_cache_retention": _ignore(_CACHE_HINT),
    "prompt_cache_options": _ignore(_CACHE_HINT),
})

# An Anthropic messages request sent to an OpenAI (or OpenAI-compatible) model.
MESSAGES_TO_CHAT: Mapping[str, FieldRule] = MappingProxyType({
    "model": _translate("replaced by the provider's model name"),
    "messages": _translate("tool_result blocks → tool messages; tool_use → tool_calls; thinking blocks dropped"),
    "max_tokens": _translate("→ max_tokens, or max_completion_tokens when the model is asked to reason"),
    "system": _translate("→ a leading system message"),
    "temperature": _translate("→ temperature (Anthropic's 0–1 lies within OpenAI's 0–2)"),
    "top_p": _translate("→ top_p, the same nucleus sampling"),
    "stop_sequences": _translate("→ stop; OpenAI takes at most 4, so more are refused"),
    "stream": _translate("→ stream with the usage chunk; chunks are translated back to events"),
    "tools": _translate("custom tools → function tools; server tools are refused"),
    "tool_choice": _translate("auto/none/any/tool → auto/none/required/function; "
                              "disable_parallel_tool_use → parallel_tool_calls=false"),
    "metadata": _translate("user_id → user"),
    "thinking": _translate("enabled → reasoning_effort by budget; adaptive and disabled leave the "
                           "provider's default"),
    "output_config": _translate("effort → reasoning_effort; format → response_format json_schema"),
    "service_tier": _translate("auto → auto, standard_only → default"),
    "top_k": _refuse("OpenAI has no top_k sampling"),
    "container": _refuse("code-execution containers exist only at Anthropic"),
    "mcp_servers": _refuse("Anthropic's MCP connector has no OpenAI chat equivalent"),
    "context_management": _refuse("Anthropic's context editing has no OpenAI equivalent"),
    "inference_geo": _refuse("the provider cannot honour an Anthropic inference region"),
    "speed": _refuse("fast mode exists only at Anthropic", "standard"),
    "diagnostics": _refuse("OpenAI returns no prompt-cache diagnostics"),
    "workspace_id": _refuse("Anthropic workspaces do not exist at the provider"),
    "user_profile_id": _refuse("Anthropic user profiles do not exist at the provider"),
    "cache_control": _ignore("OpenAI caches prompt prefixes by itself; caching never changes the answer"),
})


def check_fields(body: Mapping[str, Any], rules: Mapping[str, FieldRule], provider: str) -> None:
    """Raise `TranslationError` for the first field that is refused or undecided.

    ``provider`` names the provider's API in the message ("an Anthropic model").
    """
    for name, value in body.items():
        rule = rules.get(name)
        if rule is None:
            raise TranslationError(f"unknown field '{name}' cannot be sent to {provider}: the gateway translates "
                                   "only fields it knows; leave it out", field=name)
        if value is None or rule.action is not Action.REFUSE or _is_neutral(value, rule.neutral):
            continue
        allowed = f" (only {' or '.join(_show(v) for v in rule.neutral)} is accepted)" if rule.neutral else ""
        raise TranslationError(f"field '{name}' cannot be sent to {provider}: {rule.reason}{allowed}; "
                               "leave it out", field=name)


def _is_neutral(value: Any, neutral: tuple[Any, ...]) -> bool:
    return any(_same(value, candidate) for candidate in neutral)


def _same(value: Any, candidate: Any) -> bool:
    # bool is an int in Python: n=true must not pass as n=1, nor logprobs=0 as logprobs=false.
    if isinstance(value, bool) or isinstance(candidate, bool):
        return value is candidate
    return bool(value == candidate)


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, str) else str(value)
