"""A Responses API request as a chat completions request, for providers that do not serve
the Responses API (OpenAI-compatible servers with chat completions only; Anthropic, via
the chat → messages translation after this one, which also turns `response_format` into a
forced answer tool and `reasoning_effort` into a thinking budget).

What cannot be honoured is refused with `TranslationError` naming the field: stored state
(`previous_response_id`, `store: true`, `background`, `conversation`, stored `prompt`s),
input items that only the provider that made them understands (`item_reference`, built-in
tool calls), and built-in tools (`web_search`, `file_search`, `code_interpreter`, ...).
Reasoning items of earlier turns are dropped (only their provider can read them).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tollway.providers._translate_common import TranslationError

JSON = dict[str, Any]

# Fields that need the provider to keep state: refused, naming the field.
_STATEFUL = {
    "previous_response_id": "send the whole conversation in 'input' instead",
    "conversation": "send the whole conversation in 'input' instead",
    "background": "background responses need a provider that stores responses",
    "prompt": "stored prompt templates live on the provider that stores them",
}
_ROLES = ("user", "assistant", "system", "developer")
_EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh")


def responses_request_to_chat(body: Mapping[str, Any], provider: str) -> JSON:
    """Translate a Responses request body into a chat completions body (``model`` left out).

    ``provider`` names the provider in error messages.
    """
    _refuse_stateful(body, provider)
    messages: list[JSON] = []
    instructions = body.get("instructions")
    if isinstance(instructions, str) and instructions:
        messages.append({"role": "system", "content": instructions})
    elif instructions is not None and not isinstance(instructions, str):
        raise _refuse("'instructions' must be a string")
    messages.extend(_messages(body.get("input")))
    if not messages:
        raise _refuse("'input' must hold at least one message for this provider")
    out: JSON = {"messages": messages}
    _copy_options(body, out)
    tools = _tools(body.get("tools"), provider)
    if tools:
        out["tools"] = tools
    if (choice := _tool_choice(body.get("tool_choice"), provider)) is not None:
        out["tool_choice"] = choice
    if isinstance(body.get("parallel_tool_calls"), bool) and tools:
        out["parallel_tool_calls"] = body["parallel_tool_calls"]
    if (fmt := _response_format(body.get("text"))) is not None:
        out["response_format"] = fmt
    if body.get("stream") is True:
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}
    return out


def _refuse(message: str, field: str | None = None) -> TranslationError:
    """A `TranslationError` (a 400) whose message names the field, ``field`` its ``param``."""
    return TranslationError(message, field=field)


def _refuse_stateful(body: Mapping[str, Any], provider: str) -> None:
    for name, advice in _STATEFUL.items():
        if body.get(name) not in (None, False, ""):
            raise _refuse(f"'{name}' cannot be honoured: provider {provider!r} does not store responses "
                                   f"({advice})", name)
    if body.get("store") is True:
        raise _refuse(f"'store': true cannot be honoured: provider {provider!r} does not store responses; "
                               "send store: false or leave it out", "store")


def _copy_options(body: Mapping[str, Any], out: JSON) -> None:
    for name in ("temperature", "top_p"):
        if body.get(name) is not None:
            out[name] = body[name]
    if body.get("max_output_tokens") is not None:
        out["max_tokens"] = body["max_output_tokens"]
    user = body.get("user") or body.get("safety_identifier")
    if isinstance(user, str) and user:
        out["user"] = user
    reasoning = body.get("reasoning")
    if reasoning is not None:
        if not isinstance(reasoning, Mapping):
            raise _refuse("'reasoning' must be an object", "reasoning")
        effort = reasoning.get("effort")
        if effort is not None:
            if effort not in _EFFORTS:
                raise _refuse(f"reasoning.effort must be one of {', '.join(_EFFORTS)}", "reasoning.effort")
            out["reasoning_effort"] = effort


def _messages(raw: object) -> list[JSON]:
    if raw is None:
        return []
    if isinstance(raw, str):
        return [{"role": "user", "content": raw}]
    if not isinstance(raw, list):
        raise _refuse("'input' must be a string or an array of input items", "input")
    messages: list[JSON] = []
    for index, item in enumerate(raw):
        where = f"input[{index}]"
        if not isinstance(item, Mapping):
            raise _refuse(f"{where} must be an object", "input")
        kind = item.get("type") or ("message" if "role" in item else None)
        if kind == "message":
            _append_message(messages, item, where)
        elif kind == "function_call":
            _append_call(messages, item, where)
        elif kind == "function_call_output":
            messages.append({"role": "tool", "tool_call_id": _required_str(item, "call_id", where),
                             "content": _output_text(item.get("output"), where)})
        elif kind == "reasoning":
            continue  # an earlier turn's reasoning: only the provider that made it can read it
        else:
            raise _refuse(f"{where}.type {kind!r} cannot be sent to this provider (only messages, "
                                   "function_call and function_call_output items can)", "input")
    return messages


def _append_message(messages: list[JSON], item: Mapping[str, Any], where: str) -> None:
    role = item.get("role")
    if role not in _ROLES:
        raise _refuse(f"{where}.role must be one of {', '.join(_ROLES)}", "input")
    content = _content(item.get("content"), where)
    if role == "developer":
        role = "system"
    messages.append({"role": role, "content": content})


def _append_call(messages: list[JSON], item: Mapping[str, Any], where: str) -> None:
    """A function call of an earlier turn: a tool call of the assistant message before it."""
    call = {"id": _required_str(item, "call_id", where), "type": "function",
            "function": {"name": _required_str(item, "name", where), "arguments": item.get("arguments") or "{}"}}
    last = messages[-1] if messages else None
    if last is not None and last["role"] == "assistant" and not isinstance(last.get("content"), list):
        last.setdefault("tool_calls", []).append(call)
    else:
        messages.append({"role": "assistant", "content": None, "tool_calls": [call]})


def _required_str(item: Mapping[str, Any], name: str, where: str) -> str:
    value = item.get(name)
    if not isinstance(value, str) or not value:
        raise _refuse(f"{where}.{name} must be a non-empty string", "input")
    return value


def _content(raw: object, where: str) -> str | list[JSON]:
    if isinstance(raw, str):
        return raw
    if not isinstance(raw, list):
        raise _refuse(f"{where}.content must be a string or an array of content parts", "input")
    parts = [_part(part, f"{where}.content[{i}]") for i, part in enumerate(raw)]
    if all(part["type"] == "text" for part in parts):
        return "".join(part["text"] for part in parts)  # plain text: every chat server takes a string
    return parts


def _part(part: object, where: str) -> JSON:
    if not isinstance(part, Mapping):
        raise _refuse(f"{where} must be an object", "input")
    kind = part.get("type")
    if kind in ("input_text", "output_text", "text"):
        return {"type": "text", "text": part.get("text") or ""}
    if kind == "refusal":
        return {"type": "text", "text": part.get("refusal") or ""}
    if kind == "input_image":
        url = part.get("image_url")
        if not isinstance(url, str):
            raise _refuse(f"{where}: images must be sent as image_url (file ids cannot reach this provider)",
                                   "input")
        return {"type": "image_url", "image_url": {"url": url, "detail": part.get("detail") or "auto"}}
    if kind == "input_file":
        if not isinstance(part.get("file_data"), str):
            raise _refuse(f"{where}: files must be sent inline as file_data (file ids and URLs cannot "
                                   "reach this provider)", "input")
        return {"type": "file", "file": {"file_data": part["file_data"], "filename": part.get("filename") or "file"}}
    raise _refuse(f"{where}: content parts of type {kind!r} cannot be sent to this provider", "input")


def _output_text(output: object, where: str) -> str:
    if isinstance(output, str):
        return output
    if isinstance(output, list):
        return "".join(part.get("text") or "" for part in output if isinstance(part, Mapping))
    raise _refuse(f"{where}.output must be a string or an array of content parts", "input")


def _tools(raw: object, provider: str) -> list[JSON]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise _refuse("'tools' must be an array", "tools")
    builtin = [str(tool.get("type")) for tool in raw if isinstance(tool, Mapping) and tool.get("type") != "function"]
    if builtin:
        raise _refuse(f"built-in tools {', '.join(builtin)} are not offered by provider {provider!r}; "
                               "only function tools can be sent to it", "tools")
    tools = []
    for index, tool in enumerate(raw):
        if not isinstance(tool, Mapping) or not isinstance(tool.get("name"), str):
            raise _refuse(f"tools[{index}] must be a function tool with a name", "tools")
        function: JSON = {"name": tool["name"], "parameters": tool.get("parameters") or {"type": "object",
                                                                                        "properties": {}}}
        if tool.get("description"):
            function["description"] = tool["description"]
        if tool.get("strict") is not None:
            function["strict"] = tool["strict"]
        tools.append({"type": "function", "function": function})
    return tools


def _tool_choice(choice: object, provider: str) -> object:
    if choice is None or choice in ("auto", "none", "required"):
        return choice
    if isinstance(choice, Mapping) and choice.get("type") == "function" and isinstance(choice.get("name"), str):
        return {"type": "function", "function": {"name": choice["name"]}}
    kind = choice.get("type") if isinstance(choice, Mapping) else choice
    raise _refuse(f"tool_choice {kind!r} is not offered by provider {provider!r}", "tool_choice")


def _response_format(text: object) -> JSON | None:
    if text is None:
        return None
    if not isinstance(text, Mapping):
        raise _refuse("'text' must be an object", "text")
    fmt = text.get("format")
    if fmt is None or (isinstance(fmt, Mapping) and fmt.get("type") == "text"):
        return None
    if not isinstance(fmt, Mapping):
        raise _refuse("text.format must be an object", "text.format")
    if fmt.get("type") == "json_object":
        return {"type": "json_object"}
    if fmt.get("type") == "json_schema":
        if not isinstance(fmt.get("schema"), Mapping) or not isinstance(fmt.get("name"), str):
            raise _refuse("text.format of type json_schema needs a name and a schema", "text.format")
        schema: JSON = {"name": fmt["name"], "schema": fmt["schema"]}
        for name in ("strict", "description"):
            if fmt.get(name) is not None:
                schema[name] = fmt[name]
        return {"type": "json_schema", "json_schema": schema}
    raise _refuse(f"text.format of type {fmt.get('type')!r} is not supported", "text.format")
