"""What a Responses request asks of an Anthropic model beyond chat → messages: structured
output and reasoning effort, which the chat → messages translation drops.

- `text.format` json_schema (chat's `response_format`) becomes a function tool whose
  parameters are the schema, forced when the request has no tools of its own; its call
  comes back as the answer's text (see `STRUCTURED_OUTPUT_TOOL`). json_object becomes an
  instruction.
- `reasoning.effort` (chat's `reasoning_effort`) becomes extended thinking with a token
  budget within `max_tokens`; Anthropic takes neither temperature nor top_p with it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tollway.providers._responses_request_to_chat import STRUCTURED_OUTPUT_TOOL
from tollway.providers._translate_common import TranslationError

JSON = dict[str, Any]

# Thinking budget per effort; none and minimal turn thinking off.
_BUDGETS = {"low": 1024, "medium": 4096, "high": 16384, "xhigh": 32000}
_MIN_BUDGET = 1024  # Anthropic's smallest budget_tokens
_JSON_ONLY = "Answer with one JSON object and nothing else."


def chat_body_for_anthropic(chat: JSON) -> tuple[JSON, Callable[[JSON], JSON]]:
    """The chat body ready for `chat_request_to_messages`, and what to apply to its result."""
    fmt = chat.pop("response_format", None)
    effort = chat.pop("reasoning_effort", None)
    budget = _BUDGETS.get(effort) if isinstance(effort, str) else None
    if fmt is not None and fmt.get("type") == "json_schema":
        if budget is not None:
            raise TranslationError("text.format json_schema and reasoning.effort cannot be combined on Anthropic "
                                   "models (a forced answer tool excludes extended thinking)")
        _add_answer_tool(chat, fmt["json_schema"])
    elif fmt is not None:  # json_object
        chat["messages"] = [{"role": "system", "content": _JSON_ONLY}, *chat["messages"]]
    if budget is None:
        return chat, _unchanged
    return chat, lambda messages: _with_thinking(messages, budget)


def _add_answer_tool(chat: JSON, schema: JSON) -> None:
    description = schema.get("description") or f"Give the answer in the {schema['name']} format."
    tool = {"type": "function", "function": {"name": STRUCTURED_OUTPUT_TOOL, "description": description,
                                             "parameters": schema["schema"]}}
    own = chat.get("tools") or []
    chat["tools"] = [*own, tool]
    if not own:
        chat["tool_choice"] = {"type": "function", "function": {"name": STRUCTURED_OUTPUT_TOOL}}


def _unchanged(messages: JSON) -> JSON:
    return messages


def _with_thinking(messages: JSON, budget: int) -> JSON:
    max_tokens = messages["max_tokens"]
    budget = min(budget, max_tokens - 1)
    if budget < _MIN_BUDGET:
        raise TranslationError(f"reasoning.effort needs max_output_tokens above {_MIN_BUDGET} on Anthropic models "
                               f"(extended thinking spends at least {_MIN_BUDGET} of them)")
    messages["thinking"] = {"type": "enabled", "budget_tokens": budget}
    messages.pop("temperature", None)
    messages.pop("top_p", None)
    return messages
