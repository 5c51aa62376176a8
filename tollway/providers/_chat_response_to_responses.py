"""A chat completion as a Responses API response, for providers that do not serve the
Responses API; also the response object and output items the stream translation uses.

Ids are the gateway's own (`resp_…`, `msg_…`, `fc_…`): the provider stores nothing, so
these responses cannot be retrieved later, and `store` is reported false.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import Any

from tollway.providers.usage_extract import usage_from_openai
from tollway.usage import Usage

JSON = dict[str, Any]

# finish_reason → (status, incomplete_details.reason)
_ENDINGS = {"length": ("incomplete", "max_output_tokens"), "content_filter": ("incomplete", "content_filter")}


def new_id(prefix: str) -> str:
    """A fresh id in the provider's style (``resp_`` + 48 hex digits)."""
    return f"{prefix}_{os.urandom(24).hex()}"


def responses_usage(usage: Usage | None) -> JSON | None:
    """`Usage` in the Responses API's shape."""
    if usage is None:
        return None
    return {"input_tokens": usage.prompt_tokens,
            "input_tokens_details": {"cached_tokens": usage.cached_tokens},
            "output_tokens": usage.completion_tokens,
            "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
            "total_tokens": usage.total_tokens}


def response_object(response_id: str, model: str, created: int, status: str, output: list[JSON],
                    usage: Usage | None, finish_reason: str | None = None) -> JSON:
    """A `response` object; ``finish_reason`` (chat's) decides an incomplete one's reason."""
    status_, reason = _ENDINGS.get(finish_reason or "", (status, None))
    return {
        "id": response_id, "object": "response", "created_at": created, "status": status_,
        "background": False, "error": None,
        "incomplete_details": {"reason": reason} if reason else None,
        "instructions": None, "max_output_tokens": None, "model": model, "output": output,
        "parallel_tool_calls": True, "previous_response_id": None,
        "reasoning": {"effort": None, "summary": None}, "store": False, "temperature": None,
        "text": {"format": {"type": "text"}}, "tool_choice": "auto", "tools": [], "top_p": None,
        "truncation": "disabled", "usage": responses_usage(usage), "user": None, "metadata": {},
    }


def output_text_part(text: str) -> JSON:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def message_item(item_id: str, status: str, parts: list[JSON]) -> JSON:
    return {"id": item_id, "type": "message", "status": status, "role": "assistant", "content": parts}


def call_item(item_id: str, status: str, call_id: str, name: str, arguments: str) -> JSON:
    return {"id": item_id, "type": "function_call", "status": status, "call_id": call_id, "name": name,
            "arguments": arguments}


def chat_response_to_responses(chat: Mapping[str, Any], model: str) -> JSON:
    """Translate a ``chat.completion`` into a ``response``; ``model`` is reported to the client."""
    choice = (chat.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    output: list[JSON] = []
    text: str = message["content"] if isinstance(message.get("content"), str) else ""
    for call in message.get("tool_calls") or ():
        function = call.get("function") or {}
        output.append(call_item(new_id("fc"), "completed", call.get("id") or new_id("call"),
                                function.get("name") or "", function.get("arguments") or ""))
    parts = [output_text_part(text)] if text else []
    if message.get("refusal"):
        parts.append({"type": "refusal", "refusal": message["refusal"]})
    if parts or not output:
        output.insert(0, message_item(new_id("msg"), "completed", parts))
    created: int = chat["created"] if isinstance(chat.get("created"), int) else int(time.time())
    return response_object(new_id("resp"), model, created, "completed", output,
                           usage_from_openai(chat.get("usage")), choice.get("finish_reason"))
