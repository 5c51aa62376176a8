"""OpenAI chat request → Gemini `generateContent` request (the Gemini adapter's inbound
translator: every client API reaches Gemini through chat, the internal form).

Pure: dicts in, dicts out. Every top-level chat field is handled as `CHAT_TO_GEMINI`
decides; a refused or unknown field raises `TranslationError` (a 400 naming it).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from tollway.providers._chat_turns import chat_turns, data_url, tool_output
from tollway.providers._translate_common import JSON, TranslationError, parse_arguments, text_of
from tollway.providers.field_rules import Action, FieldRule, check_fields, rule

_TO_GEMINI = "a Gemini model"
_CACHE_HINT = "a prompt-cache hint: it changes cost and latency, never the answer"
# reasoning_effort → thinkingConfig.thinkingBudget (tokens); "none"/"minimal" turn thinking off.
THINKING_BUDGETS: Mapping[str, int] = MappingProxyType({"none": 0, "minimal": 0, "low": 1_024, "medium": 8_192,
                                                        "high": 24_576})


CHAT_TO_GEMINI: Mapping[str, FieldRule] = MappingProxyType({
    "model": rule(Action.TRANSLATE, "the model goes in the URL"),
    "messages": rule(Action.TRANSLATE, "system/developer → systemInstruction; assistant → model turns; "
                                        "tool calls and results → functionCall / functionResponse parts"),
    "max_completion_tokens": rule(Action.TRANSLATE, "→ generationConfig.maxOutputTokens"),
    "max_tokens": rule(Action.TRANSLATE, "→ generationConfig.maxOutputTokens"),
    "n": rule(Action.TRANSLATE, "→ generationConfig.candidateCount"),
    "temperature": rule(Action.TRANSLATE, "→ generationConfig.temperature"),
    "top_p": rule(Action.TRANSLATE, "→ generationConfig.topP"),
    "stop": rule(Action.TRANSLATE, "→ generationConfig.stopSequences"),
    "presence_penalty": rule(Action.TRANSLATE, "→ generationConfig.presencePenalty"),
    "frequency_penalty": rule(Action.TRANSLATE, "→ generationConfig.frequencyPenalty"),
    "seed": rule(Action.TRANSLATE, "→ generationConfig.seed"),
    "response_format": rule(Action.TRANSLATE, "json_object → responseMimeType application/json; json_schema → "
                                               "responseJsonSchema as well"),
    "reasoning_effort": rule(Action.TRANSLATE, "→ generationConfig.thinkingConfig.thinkingBudget"),
    "stream": rule(Action.TRANSLATE, "→ streamGenerateContent (SSE); chunks are translated back"),
    "stream_options": rule(Action.TRANSLATE, "include_usage decides the usage chunk"),
    "tools": rule(Action.TRANSLATE, "function tools → functionDeclarations with parametersJsonSchema"),
    "tool_choice": rule(Action.TRANSLATE, "auto/none/required/function → toolConfig.functionCallingConfig"),
    "parallel_tool_calls": rule(Action.REFUSE, "Gemini cannot be told to call one function at a time", True),
    "user": rule(Action.IGNORE, "identifies the end user to OpenAI; Gemini's answer does not depend on it"),
    "safety_identifier": rule(Action.IGNORE, "identifies the end user to OpenAI; the answer does not depend on it"),
    "metadata": rule(Action.IGNORE, "tags stored completions in OpenAI's dashboard"),
    "store": rule(Action.REFUSE, "completions cannot be stored at OpenAI when Gemini answers", False),
    "prompt_cache_key": rule(Action.IGNORE, _CACHE_HINT),
    "prompt_cache_retention": rule(Action.IGNORE, _CACHE_HINT),
    "prediction": rule(Action.IGNORE, "predicted outputs only speed up an answer that stays the same"),
    "logprobs": rule(Action.REFUSE, "log probabilities are not translated", False),
    "top_logprobs": rule(Action.REFUSE, "log probabilities are not translated", 0),
    "logit_bias": rule(Action.REFUSE, "Gemini has no logit bias", {}),
    "audio": rule(Action.REFUSE, "audio answers are not translated"),
    "modalities": rule(Action.REFUSE, "only text answers are translated", ["text"]),
    "service_tier": rule(Action.REFUSE, "OpenAI's service tiers do not exist at Google", "auto", "default"),
    "verbosity": rule(Action.REFUSE, "Gemini has no verbosity setting", "medium"),
    "functions": rule(Action.REFUSE, "deprecated function calling: send tools instead"),
    "function_call": rule(Action.REFUSE, "deprecated function calling: send tool_choice instead"),
    "web_search_options": rule(Action.REFUSE, "OpenAI's web search has no Gemini equivalent of the same shape"),
})


def chat_request_to_gemini(body: Mapping[str, Any]) -> JSON:
    """Translate a chat completions body into a `generateContent` body (the model and
    the choice of stream go in the URL, not the body)."""
    check_fields(body, CHAT_TO_GEMINI, _TO_GEMINI)
    system, contents = chat_turns(body.get("messages"), _GeminiTurns())
    out: JSON = {"contents": contents}
    if system:
        out["systemInstruction"] = {"parts": [{"text": text} for text in system]}
    config = _generation_config(body)
    if config:
        out["generationConfig"] = config
    tools = body.get("tools")
    if tools:
        if not isinstance(tools, list):
            raise TranslationError("tools must be an array of tool objects", field="tools")
        out["tools"] = [{"functionDeclarations": [_declaration(tool, f"tools[{i}]") for i, tool in enumerate(tools)]}]
    choice = body.get("tool_choice")
    if choice is not None:
        out["toolConfig"] = {"functionCallingConfig": _calling_config(choice)}
    return out


class _GeminiTurns:
    """Chat turns as Gemini contents (`tollway.providers._chat_turns`); one per request: a
    functionResponse names its function, found by the id of the call an earlier turn made."""

    target = _TO_GEMINI
    model_role = "model"
    blocks_key = "parts"

    def __init__(self) -> None:
        self._names: dict[str, str] = {}  # tool call id -> function name

    def image(self, image: Any, where: str) -> JSON:
        mime, data = data_url(image, where, _TO_GEMINI)
        return {"inlineData": {"mimeType": mime or "application/octet-stream", "data": data}}

    def assistant(self, message: Mapping[str, Any], where: str) -> list[JSON]:
        parts: list[JSON] = []
        text = text_of(message.get("content"))
        if text:
            parts.append({"text": text})
        for j, call in enumerate(message.get("tool_calls") or ()):
            function = call.get("function") or {}
            name = function.get("name")
            if not isinstance(name, str) or not name:
                raise TranslationError(f"{where}.tool_calls[{j}].function.name is required", field="messages")
            if isinstance(call.get("id"), str):
                self._names[call["id"]] = name
            parts.append({"functionCall": {"name": name, "args": parse_arguments(function.get("arguments"),
                                                                                 f"{where}.tool_calls[{j}]")}})
        return parts or [{"text": ""}]

    def tool_result(self, message: Mapping[str, Any], where: str) -> JSON:
        call_id = message.get("tool_call_id")
        name = self._names.get(call_id) if isinstance(call_id, str) else None
        if name is None:
            raise TranslationError(f"{where}.tool_call_id {call_id!r} names no tool call of an earlier assistant "
                                   "message (Gemini matches a result to its call by the function's name)",
                                   field="messages")
        text, value = tool_output(message, where)
        return {"functionResponse": {"name": name, "response": value if value is not None else {"result": text}}}


def _generation_config(body: Mapping[str, Any]) -> JSON:
    config: JSON = {}
    cap = body.get("max_completion_tokens", body.get("max_tokens"))
    if cap is not None:
        config["maxOutputTokens"] = cap
    for chat_name, gemini_name in (("n", "candidateCount"), ("temperature", "temperature"), ("top_p", "topP"),
                                   ("presence_penalty", "presencePenalty"), ("frequency_penalty", "frequencyPenalty"),
                                   ("seed", "seed")):
        if body.get(chat_name) is not None:
            config[gemini_name] = body[chat_name]
    stop = body.get("stop")
    if stop is not None:
        config["stopSequences"] = [stop] if isinstance(stop, str) else list(stop)
    _response_format(body.get("response_format"), config)
    effort = body.get("reasoning_effort")
    if effort is not None:
        if effort not in THINKING_BUDGETS:
            raise TranslationError(f"reasoning_effort {effort!r} is not one of {', '.join(THINKING_BUDGETS)}",
                                   field="reasoning_effort")
        config["thinkingConfig"] = {"thinkingBudget": THINKING_BUDGETS[effort]}
    return config


def _response_format(value: Any, config: JSON) -> None:
    kind = value.get("type") if isinstance(value, Mapping) else None
    if value is None or kind == "text":
        return
    if kind == "json_object":
        config["responseMimeType"] = "application/json"
    elif kind == "json_schema" and isinstance(value.get("json_schema"), Mapping):
        config["responseMimeType"] = "application/json"
        config["responseJsonSchema"] = value["json_schema"].get("schema") or {}
    else:
        raise TranslationError("response_format must be text, json_object or json_schema", field="response_format")


def _declaration(tool: Any, where: str) -> JSON:
    if not isinstance(tool, Mapping) or tool.get("type") != "function" or not isinstance(tool.get("function"), Mapping):
        raise TranslationError(f"{where}: only function tools can be sent to {_TO_GEMINI}", field="tools")
    function = tool["function"]
    declaration: JSON = {"name": function.get("name")}
    if function.get("description"):
        declaration["description"] = function["description"]
    if function.get("parameters"):
        declaration["parametersJsonSchema"] = function["parameters"]
    return declaration


def _calling_config(choice: Any) -> JSON:
    if choice in ("auto", "none", "required"):
        return {"mode": {"auto": "AUTO", "none": "NONE", "required": "ANY"}[choice]}
    if isinstance(choice, Mapping) and choice.get("type") == "function":
        name = (choice.get("function") or {}).get("name")
        if isinstance(name, str) and name:
            return {"mode": "ANY", "allowedFunctionNames": [name]}
    raise TranslationError("tool_choice must be auto, none, required or {type: function, function: {name}}",
                           field="tool_choice")
