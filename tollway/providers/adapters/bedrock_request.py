"""OpenAI chat request → Bedrock `Converse` request (the Bedrock adapter's inbound
translator: every client API reaches Bedrock through chat, the internal form).

Pure: dicts in, dicts out. Every top-level chat field is handled as `CHAT_TO_CONVERSE`
decides; a refused or unknown field raises `TranslationError` (a 400 naming it).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from tollway.providers._chat_options_to_messages import DEFAULT_MAX_TOKENS, EFFORT_BUDGET
from tollway.providers._chat_turns import chat_turns, data_url, tool_output
from tollway.providers._translate_common import JSON, TranslationError, parse_arguments, text_of
from tollway.providers.field_rules import Action, FieldRule, check_fields, rule

_TO_BEDROCK = "a Bedrock model"
_CACHE_HINT = "a prompt-cache hint: it changes cost and latency, never the answer"
_END_USER = "identifies the end user to OpenAI; the answer does not depend on it"
# Converse takes images as raw bytes of one of these formats.
IMAGE_FORMATS: Mapping[str, str] = MappingProxyType({"image/png": "png", "image/jpeg": "jpeg", "image/jpg": "jpeg",
                                                     "image/gif": "gif", "image/webp": "webp"})
# Converse allows at most four stop sequences.
MAX_STOP_SEQUENCES = 4


CHAT_TO_CONVERSE: Mapping[str, FieldRule] = MappingProxyType({
    "model": rule(Action.TRANSLATE, "the model id goes in the URL"),
    "messages": rule(Action.TRANSLATE, "system/developer → system blocks; tool calls and results → toolUse / "
                                        "toolResult blocks; same-role turns merged (Converse alternates roles)"),
    "max_completion_tokens": rule(Action.TRANSLATE, "→ inferenceConfig.maxTokens"),
    "max_tokens": rule(Action.TRANSLATE, "→ inferenceConfig.maxTokens"),
    "temperature": rule(Action.TRANSLATE, "→ inferenceConfig.temperature"),
    "top_p": rule(Action.TRANSLATE, "→ inferenceConfig.topP"),
    "stop": rule(Action.TRANSLATE, "→ inferenceConfig.stopSequences (at most 4)"),
    "stream": rule(Action.TRANSLATE, "→ ConverseStream (event-stream framing); events are translated back"),
    "stream_options": rule(Action.TRANSLATE, "include_usage decides the usage chunk"),
    "tools": rule(Action.TRANSLATE, "function tools → toolConfig.tools[].toolSpec with inputSchema.json"),
    "tool_choice": rule(Action.TRANSLATE, "auto → auto, required → any, function → tool; none → no toolConfig"),
    "n": rule(Action.REFUSE, "Converse answers with one generation", 1),
    "parallel_tool_calls": rule(Action.REFUSE, "Converse cannot be told to call one tool at a time", True),
    "user": rule(Action.IGNORE, _END_USER),
    "safety_identifier": rule(Action.IGNORE, _END_USER),
    "metadata": rule(Action.IGNORE, "tags stored completions in OpenAI's dashboard"),
    "store": rule(Action.REFUSE, "completions cannot be stored at OpenAI when Bedrock answers", False),
    "prompt_cache_key": rule(Action.IGNORE, _CACHE_HINT),
    "prompt_cache_retention": rule(Action.IGNORE, _CACHE_HINT),
    "prediction": rule(Action.IGNORE, "predicted outputs only speed up an answer that stays the same"),
    "presence_penalty": rule(Action.REFUSE, "Converse has no presence penalty", 0),
    "frequency_penalty": rule(Action.REFUSE, "Converse has no frequency penalty", 0),
    "seed": rule(Action.REFUSE, "Converse takes no seed"),
    "response_format": rule(Action.REFUSE, "Converse has no JSON mode; describe the format in the prompt or use a "
                                            "tool", {"type": "text"}),
    "reasoning_effort": rule(Action.TRANSLATE, "Anthropic models: → additionalModelRequestFields.thinking "
                                                "(budget_tokens by effort, maxTokens raised above it); refused for "
                                                "other model families"),
    "logprobs": rule(Action.REFUSE, "log probabilities are not translated", False),
    "top_logprobs": rule(Action.REFUSE, "log probabilities are not translated", 0),
    "logit_bias": rule(Action.REFUSE, "Converse has no logit bias", {}),
    "audio": rule(Action.REFUSE, "audio answers are not translated"),
    "modalities": rule(Action.REFUSE, "only text answers are translated", ["text"]),
    "service_tier": rule(Action.REFUSE, "OpenAI's service tiers do not exist at AWS", "auto", "default"),
    "verbosity": rule(Action.REFUSE, "Converse has no verbosity setting", "medium"),
    "functions": rule(Action.REFUSE, "deprecated function calling: send tools instead"),
    "function_call": rule(Action.REFUSE, "deprecated function calling: send tool_choice instead"),
    "web_search_options": rule(Action.REFUSE, "OpenAI's web search has no Bedrock equivalent"),
})


def chat_request_to_converse(body: Mapping[str, Any], model: str = "") -> JSON:
    """Translate a chat completions body for the Bedrock ``model`` into a `Converse` body
    (the model id and the choice of stream go in the URL, not the body)."""
    check_fields(body, CHAT_TO_CONVERSE, _TO_BEDROCK)
    system, messages = chat_turns(body.get("messages"), _TURNS)
    out: JSON = {"messages": messages}
    if system:
        out["system"] = [{"text": text} for text in system]
    config = _inference_config(body)
    if config:
        out["inferenceConfig"] = config
    tool_config = _tool_config(body.get("tools"), body.get("tool_choice"), messages)
    if tool_config is not None:
        out["toolConfig"] = tool_config
    _thinking(body.get("reasoning_effort"), model, out)
    return out


def _thinking(effort: Any, model: str, out: JSON) -> None:
    """reasoning_effort as Claude's extended thinking (Anthropic models only): the budget by
    effort, maxTokens raised above it (Claude counts thinking within max_tokens and requires
    budget_tokens < max_tokens). Claude thinks only at temperature 1, with top_p >= 0.95,
    without a forced tool, and cannot continue a tool call whose thinking blocks chat
    cannot carry: those are refused."""
    if effort is None or effort == "none":
        return
    if ".anthropic." not in f".{model}":
        raise TranslationError(f"reasoning_effort is translated for Anthropic models on Bedrock only (not {model!r})",
                               field="reasoning_effort")
    budget = EFFORT_BUDGET.get(effort) if isinstance(effort, str) else None
    if budget is None:
        raise TranslationError(f"reasoning_effort {effort!r} is not one of none, {', '.join(EFFORT_BUDGET)}",
                               field="reasoning_effort")
    config = out.setdefault("inferenceConfig", {})
    if config.get("temperature", 1) != 1 or config.get("topP", 1) < 0.95:
        field = "temperature" if config.get("temperature", 1) != 1 else "top_p"
        raise TranslationError(f"{field} cannot be combined with reasoning_effort: Claude thinks only at temperature "
                               "1 and top_p of 0.95 or more", field=field)
    choice = (out.get("toolConfig") or {}).get("toolChoice") or {}
    if "any" in choice or "tool" in choice:
        raise TranslationError("a forced tool_choice cannot be combined with reasoning_effort on Claude",
                               field="tool_choice")
    last_assistant = next((m for m in reversed(out["messages"]) if m["role"] == "assistant"), None)
    if last_assistant is not None and any("toolUse" in block for block in last_assistant["content"]):
        raise TranslationError("reasoning_effort cannot continue a tool call on Claude: it needs the thinking blocks "
                               "of the turn that called the tool, which chat cannot carry", field="reasoning_effort")
    cap = config.get("maxTokens", DEFAULT_MAX_TOKENS)
    config["maxTokens"] = cap + budget if cap <= budget else cap
    out["additionalModelRequestFields"] = {"thinking": {"type": "enabled", "budget_tokens": budget}}


class _ConverseTurns:
    """Chat turns as Converse messages (`tollway.providers._chat_turns`)."""

    target = _TO_BEDROCK
    model_role = "assistant"
    blocks_key = "content"

    def image(self, image: Any, where: str) -> JSON:
        mime, data = data_url(image, where, _TO_BEDROCK)
        image_format = IMAGE_FORMATS.get(mime.lower())
        if image_format is None:
            raise TranslationError(f"{where}: {_TO_BEDROCK} takes png, jpeg, gif or webp images (got {mime!r})",
                                   field="messages")
        try:
            base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise TranslationError(f"{where}: the image's data is not valid base64", field="messages") from None
        # The JSON protocol carries a blob as base64: the client's encoding goes as it is.
        return {"image": {"format": image_format, "source": {"bytes": data}}}

    def assistant(self, message: Mapping[str, Any], where: str) -> list[JSON]:
        blocks: list[JSON] = []
        text = text_of(message.get("content"))
        if text:
            blocks.append({"text": text})
        for j, call in enumerate(message.get("tool_calls") or ()):
            function = call.get("function") or {}
            name, call_id = function.get("name"), call.get("id")
            if not isinstance(name, str) or not name or not isinstance(call_id, str) or not call_id:
                raise TranslationError(f"{where}.tool_calls[{j}] needs an id and a function name", field="messages")
            blocks.append({"toolUse": {"toolUseId": call_id, "name": name, "input": parse_arguments(
                function.get("arguments"), f"{where}.tool_calls[{j}]")}})
        if not blocks:  # Converse refuses empty content; an empty text block is refused too
            raise TranslationError(f"{where}: an assistant message needs content or tool_calls", field="messages")
        return blocks

    def tool_result(self, message: Mapping[str, Any], where: str) -> JSON:
        call_id = message.get("tool_call_id")
        if not isinstance(call_id, str) or not call_id:
            raise TranslationError(f"{where}.tool_call_id is required", field="messages")
        text, value = tool_output(message, where)
        result = {"json": value} if value is not None else {"text": text}
        return {"toolResult": {"toolUseId": call_id, "content": [result]}}


_TURNS = _ConverseTurns()  # stateless: one serves every request


def _inference_config(body: Mapping[str, Any]) -> JSON:
    config: JSON = {}
    cap = body.get("max_completion_tokens", body.get("max_tokens"))
    if cap is not None:
        config["maxTokens"] = cap
    if body.get("temperature") is not None:
        config["temperature"] = body["temperature"]
    if body.get("top_p") is not None:
        config["topP"] = body["top_p"]
    stop = body.get("stop")
    if stop is not None:
        stops = [stop] if isinstance(stop, str) else stop
        if not isinstance(stops, list) or len(stops) > MAX_STOP_SEQUENCES or not all(isinstance(s, str) for s in stops):
            raise TranslationError(f"stop must be a string or up to {MAX_STOP_SEQUENCES} strings for {_TO_BEDROCK}",
                                   field="stop")
        if stops:
            config["stopSequences"] = list(stops)
    return config


def _tool_config(tools: Any, choice: Any, messages: list[JSON]) -> JSON | None:
    if not tools:
        if choice not in (None, "none", "auto"):
            raise TranslationError("tool_choice needs tools", field="tool_choice")
        return _history_tools(messages)
    if not isinstance(tools, list):
        raise TranslationError("tools must be an array of tool objects", field="tools")
    if choice == "none":  # Converse has no "none": the tools are left out, unless the history needs them
        return _history_tools(messages, [_tool_spec(tool, f"tools[{i}]") for i, tool in enumerate(tools)])
    config: JSON = {"tools": [_tool_spec(tool, f"tools[{i}]") for i, tool in enumerate(tools)]}
    if choice is not None:
        config["toolChoice"] = _tool_choice(choice)
    return config


def _history_tools(messages: list[JSON], specs: list[JSON] | None = None) -> JSON | None:
    """Converse refuses toolUse and toolResult blocks without a toolConfig; with tool_choice
    none the model could still call one, so such a request is refused."""
    uses_tools = any("toolUse" in block or "toolResult" in block for m in messages for block in m["content"])
    if not uses_tools:
        return None
    if specs:
        raise TranslationError("tool_choice none cannot be sent to a Bedrock model with tool calls in the "
                               "conversation (Converse has no way to forbid calls)", field="tool_choice")
    raise TranslationError("the conversation holds tool calls: send the tools they call too", field="tools")


def _tool_spec(tool: Any, where: str) -> JSON:
    if not isinstance(tool, Mapping) or tool.get("type") != "function" or not isinstance(tool.get("function"), Mapping):
        raise TranslationError(f"{where}: only function tools can be sent to {_TO_BEDROCK}", field="tools")
    function = tool["function"]
    name = function.get("name")
    if not isinstance(name, str) or not name:
        raise TranslationError(f"{where}.function.name is required", field="tools")
    spec: JSON = {"name": name, "inputSchema": {"json": function.get("parameters") or {"type": "object",
                                                                                        "properties": {}}}}
    if function.get("description"):
        spec["description"] = function["description"]
    return {"toolSpec": spec}


def _tool_choice(choice: Any) -> JSON:
    if choice == "auto":
        return {"auto": {}}
    if choice == "required":
        return {"any": {}}
    if isinstance(choice, Mapping) and choice.get("type") == "function":
        name = (choice.get("function") or {}).get("name")
        if isinstance(name, str) and name:
            return {"tool": {"name": name}}
    raise TranslationError("tool_choice must be auto, none, required or {type: function, function: {name}}",
                           field="tool_choice")
