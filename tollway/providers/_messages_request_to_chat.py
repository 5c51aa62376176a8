"""Anthropic messages request → OpenAI chat request, and the chat reply back to a message.

The pair an Anthropic-speaking client needs to call an OpenAI (or compatible) model.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tollway.providers._messages_options_to_chat import (
    apply_metadata,
    apply_reasoning,
    apply_stop,
)
from tollway.providers._translate_common import (
    JSON,
    STOP_REASON,
    TranslationError,
    anthropic_usage,
    dumps_str,
    parse_arguments,
    text_of,
)
from tollway.providers.field_rules import MESSAGES_TO_CHAT, check_fields
from tollway.providers.usage_extract import usage_from_openai
from tollway.usage import ZERO_USAGE

_TO_OPENAI = "an OpenAI model"
_SKIPPED_BLOCKS = frozenset({"thinking", "redacted_thinking"})  # reasoning has no chat request form


def messages_request_to_chat(body: Mapping[str, Any]) -> JSON:
    """Translate an Anthropic messages request body into a chat completions body.

    ``model`` is copied when present; the caller sets the upstream name. Streaming asks
    for the usage chunk so the gateway can charge the request. Every field is handled as
    `field_rules.MESSAGES_TO_CHAT` decides: a refused or unknown field, server tools and
    content OpenAI cannot take raise `TranslationError`.
    """
    check_fields(body, MESSAGES_TO_CHAT, _TO_OPENAI)
    messages: list[JSON] = []
    if system := body.get("system"):
        messages.append({"role": "system", "content": system if isinstance(system, str) else _joined_text(system)})
    for i, message in enumerate(body.get("messages") or ()):
        where = f"messages[{i}]"
        role = message.get("role")
        if role == "user":
            messages.extend(_user_messages(message.get("content"), where))
        elif role == "assistant":
            messages.append(_assistant_message(message.get("content"), where))
        else:
            raise TranslationError(f"{where}: role must be 'user' or 'assistant', got {role!r}", field="messages")
    out: JSON = {"messages": messages}
    for name in ("model", "max_tokens", "temperature", "top_p"):
        if body.get(name) is not None:
            out[name] = body[name]
    apply_stop(body, out)
    if tools := body.get("tools"):
        if not isinstance(tools, list):
            raise TranslationError("tools must be an array of tool objects", field="tools")
        out["tools"] = [_tool(tool, f"tools[{i}]") for i, tool in enumerate(tools)]
        _copy_tool_choice(body.get("tool_choice"), out)
    if body.get("stream"):
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}
    apply_reasoning(body, out)
    apply_metadata(body, out)
    return out


def chat_response_to_messages(resp: Mapping[str, Any], model: str) -> JSON:
    """Translate a ``chat.completion`` object into an Anthropic ``message``.

    ``model`` is the name to report to the client. Only the first choice is used.
    """
    choices = resp.get("choices") or [{}]
    choice = choices[0]
    message = choice.get("message") or {}
    content: list[JSON] = []
    for text in (text_of(message.get("content")), message.get("refusal")):
        if text:
            content.append({"type": "text", "text": text})
    for i, call in enumerate(message.get("tool_calls") or ()):
        function = call.get("function") or {}
        content.append({"type": "tool_use", "id": call.get("id"), "name": function.get("name"),
                        "input": parse_arguments(function.get("arguments"), f"choices[0].message.tool_calls[{i}]")})
    return {
        "id": resp.get("id") or "",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason(choice.get("finish_reason"), any(b["type"] == "tool_use" for b in content)),
        "stop_sequence": None,
        "usage": anthropic_usage(usage_from_openai(resp.get("usage")) or ZERO_USAGE),
    }


def stop_reason(finish_reason: object, called_tools: bool) -> str:
    """Anthropic's stop_reason; some OpenAI-compatible servers say "stop" after tool calls."""
    reason = STOP_REASON.get(finish_reason, "end_turn") if isinstance(finish_reason, str) else "end_turn"
    return "tool_use" if called_tools and reason == "end_turn" else reason


def _joined_text(blocks: object) -> str:
    if not isinstance(blocks, list):
        return ""
    return "\n\n".join(block.get("text") or "" for block in blocks if block.get("type") == "text")


def _user_messages(content: object, where: str) -> list[JSON]:
    """One user turn as chat messages: its tool results first (as ``tool`` messages), then the rest."""
    if isinstance(content, str):
        return [{"role": "user", "content": content}]
    if not isinstance(content, list):
        raise TranslationError(f"{where}: content must be a string or a list of blocks", field="messages")
    results: list[JSON] = []
    parts: list[JSON] = []
    for i, block in enumerate(content):
        if block.get("type") == "tool_result":
            results.append(_tool_message(block, f"{where}.content[{i}]"))
        else:
            parts.append(_user_part(block, f"{where}.content[{i}]"))
    if len(parts) == 1 and parts[0]["type"] == "text":
        return [*results, {"role": "user", "content": parts[0]["text"]}]
    return [*results, {"role": "user", "content": parts}] if parts else results


def _user_part(block: Mapping[str, Any], where: str) -> JSON:
    kind = block.get("type")
    if kind == "text":
        return {"type": "text", "text": block.get("text") or ""}
    if kind == "image":
        return {"type": "image_url", "image_url": {"url": _source_url(block.get("source") or {}, where)}}
    if kind == "document":
        return _file_part(block, where)
    raise TranslationError(f"{where}: blocks of type {kind!r} cannot be sent to an OpenAI model", field="messages")


def _source_url(source: Mapping[str, Any], where: str) -> str:
    if source.get("type") == "base64":
        return f"data:{source.get('media_type')};base64,{source.get('data')}"
    if source.get("type") == "url":
        return str(source.get("url"))
    raise TranslationError(f"{where}: only base64 and url sources can be sent to an OpenAI model", field="messages")


def _file_part(block: Mapping[str, Any], where: str) -> JSON:
    source = block.get("source") or {}
    if source.get("type") == "text":
        return {"type": "text", "text": source.get("data") or ""}
    if source.get("type") != "base64":
        raise TranslationError(f"{where}: only base64 and text documents can be sent to an OpenAI model",
                               field="messages")
    return {"type": "file", "file": {"file_data": _source_url(source, where),
                                     "filename": block.get("title") or "document.pdf"}}


def _tool_message(block: Mapping[str, Any], where: str) -> JSON:
    content = block.get("content")
    if isinstance(content, list) and any(part.get("type") != "text" for part in content):
        raise TranslationError(f"{where}: OpenAI tool results can hold only text", field="messages")
    return {"role": "tool", "tool_call_id": block.get("tool_use_id"), "content": text_of(content)}


def _assistant_message(content: object, where: str) -> JSON:
    if isinstance(content, str):
        return {"role": "assistant", "content": content}
    if not isinstance(content, list):
        raise TranslationError(f"{where}: content must be a string or a list of blocks", field="messages")
    texts: list[str] = []
    calls: list[JSON] = []
    for i, block in enumerate(content):
        kind = block.get("type")
        if kind == "text":
            texts.append(block.get("text") or "")
        elif kind == "tool_use":
            calls.append({"id": block.get("id"), "type": "function",
                          "function": {"name": block.get("name"), "arguments": dumps_str(block.get("input") or {})}})
        elif kind not in _SKIPPED_BLOCKS:
            raise TranslationError(f"{where}.content[{i}]: blocks of type {kind!r} cannot be sent to an OpenAI model",
                                   field="messages")
    message: JSON = {"role": "assistant", "content": "".join(texts) if texts or not calls else None}
    if calls:
        message["tool_calls"] = calls
    return message


def _tool(tool: Mapping[str, Any], where: str) -> JSON:
    if not isinstance(tool, Mapping):
        raise TranslationError(f"{where}: a tool must be an object", field="tools")
    if tool.get("type") not in (None, "custom") or "input_schema" not in tool:
        raise TranslationError(f"{where}: Anthropic server tools ({tool.get('type')!r}) cannot run on an OpenAI model",
                               field="tools")
    function: JSON = {"name": tool.get("name"), "parameters": tool["input_schema"]}
    if tool.get("description"):
        function["description"] = tool["description"]
    if tool.get("strict") is True:
        function["strict"] = True  # both APIs then constrain the call's arguments to the schema
    return {"type": "function", "function": function}


def _copy_tool_choice(choice: object, out: JSON) -> None:
    if not isinstance(choice, Mapping):
        return
    kind = choice.get("type")
    if kind == "tool":
        out["tool_choice"] = {"type": "function", "function": {"name": choice.get("name")}}
    elif kind in ("auto", "none"):
        out["tool_choice"] = kind
    elif kind == "any":
        out["tool_choice"] = "required"
    else:
        raise TranslationError(f"tool_choice of type {kind!r} cannot be sent to an OpenAI model", field="tool_choice")
    if choice.get("disable_parallel_tool_use") and kind != "none":
        out["parallel_tool_calls"] = False
