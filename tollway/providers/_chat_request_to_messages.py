"""OpenAI chat request → Anthropic messages request, and the Anthropic reply back to chat.

The pair an OpenAI-speaking client needs to call a Claude model. Pure: dicts in, dicts out.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from tollway.providers._chat_options_to_messages import (
    DEFAULT_MAX_TOKENS,
    apply_metadata,
    apply_reasoning,
    apply_response_format,
    apply_sampling,
)
from tollway.providers._translate_common import (
    FINISH_REASON,
    FORMAT_TOOL,
    JSON,
    TranslationError,
    dumps_str,
    openai_usage,
    parse_arguments,
    text_of,
)
from tollway.providers.field_rules import CHAT_TO_MESSAGES, check_fields
from tollway.providers.usage_extract import usage_from_anthropic
from tollway.usage import ZERO_USAGE

_TO_ANTHROPIC = "an Anthropic model"


def chat_request_to_messages(body: Mapping[str, Any], model: str, default_max_tokens: int = DEFAULT_MAX_TOKENS) -> JSON:
    """Translate a chat completions request body for Anthropic's messages API.

    ``model`` is the upstream model name. Anthropic requires ``max_tokens``, so
    ``default_max_tokens`` is sent when the client gave none. Every field is handled as
    `field_rules.CHAT_TO_MESSAGES` decides: a refused or unknown field, and content
    Claude cannot take, raise `TranslationError`.
    """
    check_fields(body, CHAT_TO_MESSAGES, _TO_ANTHROPIC)
    system, messages = _messages(body.get("messages"))
    out: JSON = {"model": model, "messages": messages, "max_tokens": _max_tokens(body, default_max_tokens)}
    if system is not None:
        out["system"] = system
    apply_sampling(body, out)
    if tools := body.get("tools"):
        if not isinstance(tools, list):
            raise TranslationError("tools must be an array of tool objects", field="tools")
        out["tools"] = [_tool(tool, f"tools[{i}]") for i, tool in enumerate(tools)]
        if (choice := _tool_choice(body.get("tool_choice"), body.get("parallel_tool_calls"))) is not None:
            out["tool_choice"] = choice
    apply_response_format(body, out)
    apply_reasoning(body, out)
    if body.get("stream"):
        out["stream"] = True
    apply_metadata(body, out)
    return out


def messages_response_to_chat(resp: Mapping[str, Any], model: str, *, created: int | None = None) -> JSON:
    """Translate an Anthropic ``message`` response into a ``chat.completion`` object.

    ``model`` is the name to report to the client; ``created`` defaults to now.
    """
    texts: list[str] = []
    tool_calls: list[JSON] = []
    answer: str | None = None  # the JSON answer, when response_format made Claude call FORMAT_TOOL
    for block in resp.get("content") or ():
        if block.get("type") == "text":
            texts.append(block.get("text") or "")
        elif block.get("type") == "tool_use" and block.get("name") == FORMAT_TOOL:
            answer = dumps_str(block.get("input") or {})
        elif block.get("type") == "tool_use":
            arguments = dumps_str(block.get("input") or {})
            tool_calls.append({"id": block.get("id"), "type": "function",
                               "function": {"name": block.get("name"), "arguments": arguments}})
    if answer is not None:
        texts = [answer]  # the answer is the JSON alone, as at OpenAI
    message: JSON = {"role": "assistant", "content": "".join(texts) if texts or not tool_calls else None,
                     "refusal": None}
    if tool_calls:
        message["tool_calls"] = tool_calls
    stop_reason = resp.get("stop_reason") or ""
    if stop_reason == "tool_use" and answer is not None and not tool_calls:
        stop_reason = "end_turn"  # only the format tool was called: the answer is complete
    usage = usage_from_anthropic(resp.get("usage")) or ZERO_USAGE
    return {
        "id": resp.get("id") or "",
        "object": "chat.completion",
        "created": int(time.time()) if created is None else created,
        "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": None,
                     "finish_reason": FINISH_REASON.get(stop_reason, "stop")}],
        "usage": openai_usage(usage),
    }


def _messages(raw: object) -> tuple[str | list[JSON] | None, list[JSON]]:
    """Split chat messages into Anthropic's ``system`` and its alternating ``messages``."""
    if not isinstance(raw, list) or not raw:
        raise TranslationError("messages must be a non-empty list", field="messages")
    system: list[JSON] = []
    out: list[JSON] = []
    for i, message in enumerate(raw):
        where = f"messages[{i}]"
        role = message.get("role") if isinstance(message, Mapping) else None
        if role in ("system", "developer"):
            system.extend(_text_blocks(message.get("content"), where))
        elif role == "user":
            _append(out, "user", _user_content(message.get("content"), where))
        elif role == "assistant":
            _append(out, "assistant", _assistant_content(message, where))
        elif role == "tool":
            _append(out, "user", [_tool_result(message, where)])
        else:
            raise TranslationError(f"{where}: role {role!r} cannot be sent to an Anthropic model", field="messages")
    return _system(system), out


def _append(out: list[JSON], role: str, content: str | list[JSON]) -> None:
    """Add a turn, merging it into the previous one of the same role (Anthropic alternates)."""
    if not content:
        return
    if out and out[-1]["role"] == role:
        previous = out[-1]["content"]
        out[-1]["content"] = _as_blocks(previous) + _as_blocks(content)
    else:
        out.append({"role": role, "content": content})


def _as_blocks(content: str | list[JSON]) -> list[JSON]:
    return [{"type": "text", "text": content}] if isinstance(content, str) else content


def _system(blocks: list[JSON]) -> str | list[JSON] | None:
    if not blocks:
        return None
    if any("cache_control" in block for block in blocks):
        return blocks
    return "\n\n".join(block["text"] for block in blocks)


def _text_blocks(content: object, where: str) -> list[JSON]:
    """Text-only content (system and tool messages) as Anthropic text blocks."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if not isinstance(content, list):
        return []
    blocks = []
    for part in content:
        if part.get("type") != "text":
            raise TranslationError(f"{where}: only text parts are allowed here, got {part.get('type')!r}",
                                   field="messages")
        if part.get("text"):
            blocks.append(_text_block(part))
    return blocks


def _text_block(part: Mapping[str, Any]) -> JSON:
    block: JSON = {"type": "text", "text": part.get("text") or ""}
    if part.get("cache_control"):
        block["cache_control"] = part["cache_control"]
    return block


def _user_content(content: object, where: str) -> str | list[JSON]:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise TranslationError(f"{where}: content must be a string or a list of parts", field="messages")
    return [_user_part(part, f"{where}.content[{i}]") for i, part in enumerate(content)]


def _user_part(part: Mapping[str, Any], where: str) -> JSON:
    if not isinstance(part, Mapping):
        raise TranslationError(f"{where}: a content part must be an object", field="messages")
    kind = part.get("type")
    if kind == "text":
        return _text_block(part)
    if kind == "image_url":
        return _image_block(part.get("image_url"), where)
    if kind == "file":
        return _document_block(part.get("file"), where)
    raise TranslationError(f"{where}: content parts of type {kind!r} cannot be sent to an Anthropic model",
                           field="messages")


def _image_block(image_url: object, where: str) -> JSON:
    url = image_url.get("url") if isinstance(image_url, Mapping) else image_url
    if not isinstance(url, str):
        raise TranslationError(f"{where}: image_url.url must be a string", field="messages")
    if url.startswith("data:"):
        media_type, data = _split_data_url(url, where)
        return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}
    if url.startswith(("https://", "http://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    raise TranslationError(f"{where}: image URLs must be http(s) or base64 data: URLs", field="messages")


def _document_block(file: object, where: str) -> JSON:
    data_url = file.get("file_data") if isinstance(file, Mapping) else None
    if not isinstance(data_url, str) or not data_url.startswith("data:"):
        raise TranslationError(f"{where}: files must be sent inline as file_data (file ids cannot reach Anthropic)",
                               field="messages")
    media_type, data = _split_data_url(data_url, where)
    return {"type": "document", "source": {"type": "base64", "media_type": media_type, "data": data}}


def _split_data_url(url: str, where: str) -> tuple[str, str]:
    header, _, data = url.partition(",")
    media_type, _, encoding = header[len("data:"):].partition(";")
    if encoding != "base64" or not media_type:
        raise TranslationError(f"{where}: data: URLs must be base64 with a media type (data:image/png;base64,...)",
                               field="messages")
    return media_type, data


def _assistant_content(message: Mapping[str, Any], where: str) -> str | list[JSON]:
    content = message.get("content")
    tool_calls = message.get("tool_calls") or []
    if isinstance(content, str) and not tool_calls:
        return content
    blocks: list[JSON] = []
    if text := text_of(content):
        blocks.append({"type": "text", "text": text})
    for i, call in enumerate(tool_calls):
        function = call.get("function") or {}
        blocks.append({"type": "tool_use", "id": call.get("id"), "name": function.get("name"),
                       "input": parse_arguments(function.get("arguments"), f"{where}.tool_calls[{i}]")})
    return blocks


def _tool_result(message: Mapping[str, Any], where: str) -> JSON:
    call_id = message.get("tool_call_id")
    if not isinstance(call_id, str) or not call_id:
        raise TranslationError(f"{where}: tool messages need a tool_call_id", field="messages")
    content = message.get("content")
    result: str | list[JSON] = content if isinstance(content, str) else _text_blocks(content, where)
    return {"type": "tool_result", "tool_use_id": call_id, "content": result}


def _max_tokens(body: Mapping[str, Any], default: int) -> Any:
    value = body.get("max_completion_tokens")
    if value is None:
        value = body.get("max_tokens")
    return default if value is None else value


def _tool(tool: Mapping[str, Any], where: str) -> JSON:
    if not isinstance(tool, Mapping):
        raise TranslationError(f"{where}: a tool must be an object", field="tools")
    if tool.get("type") != "function" or not isinstance(tool.get("function"), Mapping):
        raise TranslationError(f"{where}: only function tools can be sent to an Anthropic model", field="tools")
    function = tool["function"]
    if function.get("name") == FORMAT_TOOL:  # its calls would come back as message content
        raise TranslationError(f"{where}: the tool name {FORMAT_TOOL!r} is reserved by the gateway (for "
                               "response_format on Anthropic models); rename the tool", field="tools")
    out: JSON = {"name": function.get("name"), "input_schema": function.get("parameters") or _empty_schema()}
    if function.get("description"):
        out["description"] = function["description"]
    if function.get("strict") is True:
        out["strict"] = True  # both APIs then constrain the call's arguments to the schema
    return out


def _empty_schema() -> JSON:
    """Anthropic requires an input schema; OpenAI lets a function omit its parameters."""
    return {"type": "object", "properties": {}}


def _tool_choice(choice: object, parallel: object) -> JSON | None:
    """OpenAI ``tool_choice`` (+ ``parallel_tool_calls``) as Anthropic's; None keeps the default."""
    if choice == "none":
        return {"type": "none"}
    out: JSON
    if choice is None or choice == "auto":
        out = {"type": "auto"}
    elif choice == "required":
        out = {"type": "any"}
    elif isinstance(choice, Mapping) and choice.get("type") == "function":
        out = {"type": "tool", "name": (choice.get("function") or {}).get("name")}
    else:
        raise TranslationError(f"tool_choice {choice!r} cannot be sent to an Anthropic model", field="tool_choice")
    if parallel is False:
        out["disable_parallel_tool_use"] = True
    elif choice is None:
        return None
    return out
