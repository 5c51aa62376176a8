"""The most a request can use, read from the exact body that is sent upstream.

One place for every route and provider: how many generations the provider will run, the
output cap it honours for each, and an upper bound of the prompt's tokens. Reservations
are computed from it (`tollway.proxy.demand`), and strict mode lowers or injects the cap
through `with_cap`.

The prompt bound rests on one fact about byte-level BPE tokenizers (OpenAI's, Anthropic's):
every token is at least one byte of UTF-8, so a text has at most as many tokens as bytes.
Token arrays count one token per element. What the text does not show is added as each
provider documents it: per-message framing, the tool-use system prompt, images.

The same walk yields the prompt's *estimate* (what ``estimate`` mode reserves): ASCII text at
about 4.4 bytes a token, other scripts by characters and their extra UTF-8 bytes (CJK about
one token a character), runs of spaces a token each, framing at the documented figures. The
weights were fitted on `bench/corpus` against OpenAI's cl100k_base and Anthropic's public
Claude tokenizer (`bench/estimate_error.py` prints the error). Pure: no I/O, nothing kept
between requests.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from tollway.errors import bad_request
from tollway.providers.client import Api

# OpenAI's cookbook ("How to count tokens with tiktoken"): 3 tokens frame every message,
# 1 more for a name, and 3 prime the reply. Anthropic documents no figure; the same
# allowance is used (the JSON keys "role" and "content", counted as bytes, add more).
MESSAGE_OVERHEAD_TOKENS = 4
MESSAGE_TOKENS = 3  # the estimate's figure: the cookbook's
REPLY_PRIMING_TOKENS = 3
# OpenAI's function-calling token counts (cookbook): 7 per function, 12 to close the block;
# the schema's JSON bytes, counted as text, cover the rest of its rendering.
OPENAI_TOOLS_OVERHEAD_TOKENS = 12
OPENAI_PER_TOOL_TOKENS = 7
# Anthropic's tool-use system prompt, the largest in its table ("Tool use pricing and
# tokens": Claude 3 Opus, tool_choice auto, 530 tokens).
ANTHROPIC_TOOLS_OVERHEAD_TOKENS = 530
ANTHROPIC_TOOLS_TYPICAL_TOKENS = 346  # the estimate's: Claude Sonnet 4 and later, tool_choice auto
# Anthropic-defined tools (bash, text editor, computer use) add their own prompt: at most
# 735 + 499 tokens (computer use) in the same table.
ANTHROPIC_BUILTIN_TOOL_TOKENS = 1_234
# Images, per image, at the largest size a provider accepts (OpenAI vision guide: fit in
# 2048², short side 768 → 8 tiles of 512; Anthropic vision guide: about 1,600 tokens).
OPENAI_IMAGE_TOKENS_MINI = 2_833 + 8 * 5_667  # gpt-4o-mini: 2,833 base + 5,667 per tile
OPENAI_IMAGE_TOKENS = 3_779  # tiles: 85 + 8 × 170; patches: 1,536 × 2.46 (gpt-4.1-nano), the larger
ANTHROPIC_IMAGE_TOKENS = 1_600
# The estimate's weights (least squares of estimate/actual over bench/corpus, both
# tokenizers, rounded up a little: an estimate a bit high costs headroom, one too low lets
# a limit overshoot). Digits: cl100k splits numbers into groups of up to three.
ASCII_TOKENS_PER_BYTE = 0.26
TOKENS_PER_CHAR = 0.31  # in text with non-ASCII characters, plus ...
TOKENS_PER_EXTRA_BYTE = 0.5  # ... per UTF-8 byte beyond the first of each character
TOKENS_PER_DOUBLE_SPACE = 1.2
TOKENS_PER_DIGIT = 1 / 3
TOKENS_PER_KEY = 1.0
# Model families whose image cost is known to stay within OPENAI_IMAGE_TOKENS; any other
# model of an OpenAI-compatible server gets the largest figure known.
_OPENAI_IMAGE_FAMILIES = ("gpt-4o", "chatgpt-4o", "gpt-4.1", "gpt-4.5", "gpt-5", "gpt-4-turbo", "o1", "o3", "o4")

# Top-level fields that never reach the model as prompt text (everything else is counted,
# so a field this module does not know can only make the bound larger).
_NOT_PROMPT = frozenset({
    "model", "stream", "stream_options", "max_tokens", "max_completion_tokens", "n", "best_of", "temperature",
    "top_p", "top_k", "presence_penalty", "frequency_penalty", "logit_bias", "logprobs", "top_logprobs", "seed",
    "user", "store", "metadata", "service_tier", "parallel_tool_calls", "stop", "stop_sequences", "reasoning_effort",
    "modalities", "prediction", "verbosity", "safety_identifier", "prompt_cache_key", "encoding_format", "dimensions",
    "echo", "thinking", "tool_choice", "messages", "system", "tools", "functions", "prompt", "input",
})
# No model produces anywhere near this many tokens; a larger cap only makes amounts absurd.
MAX_OUTPUT_CAP = 1_000_000_000
_GEMINI_CAP = "generationConfig.maxOutputTokens"
_CONVERSE_CAP = "inferenceConfig.maxTokens"
_COUNTING = frozenset({Api.COUNT_TOKENS, Api.RESPONSES_INPUT_TOKENS, Api.GEMINI_COUNT_TOKENS,
                       Api.BEDROCK_COUNT_TOKENS})
_IMAGE_PART_TYPES = frozenset({"image_url", "image", "input_image"})
_CAP_FIELDS = {Api.CHAT: ("max_completion_tokens", "max_tokens"), Api.COMPLETIONS: ("max_tokens",),
               Api.MESSAGES: ("max_tokens",), Api.EMBEDDINGS: (), Api.RESPONSES: ("max_output_tokens",)}


@dataclass(slots=True)
class WorstCase:
    """The most one upstream call can use.

    ``cap`` is the per-generation output cap the provider honours (None when the body sets
    none), carried in ``cap_field``; ``extra_output`` are output tokens no cap bounds
    (OpenAI bills rejected predicted-output tokens as completion tokens).
    ``prompt_estimate`` is the prompt's expected tokens (`_Tally.text`), read in the same
    walk as the bound and never above it.
    """

    prompt_tokens: int
    generations: int
    cap: int | None
    cap_field: str | None
    extra_output: int = 0
    token_ids: int = 0  # prompt tokens given as token arrays (counted exactly)
    prompt_estimate: int = 0

    def output_tokens(self, cap: int) -> int:
        """Output tokens at most, with ``cap`` per generation."""
        return self.generations * cap + self.extra_output


class _Tally:
    """A prompt's tokens, counted in one walk of its body: at most (``bound``) and expected
    (``estimate``). One per analysis; nothing is kept between requests."""

    __slots__ = ("bound", "estimate")

    def __init__(self) -> None:
        self.bound = 0
        self.estimate = 0.0

    def fixed(self, bound: int, estimate: float | None = None) -> None:
        """Tokens the text does not show (framing, tool prompts, images); ``estimate`` where
        the expected figure is below the largest."""
        self.bound += bound
        self.estimate += bound if estimate is None else estimate

    def add(self, other: _Tally, times: int) -> None:
        self.bound += other.bound * times
        self.estimate += other.estimate * times

    def text(self, text: str) -> None:
        """A string the model reads: its UTF-8 bytes bound its tokens; the estimate weighs
        ASCII bytes, other characters and their extra bytes, and runs of spaces (tables,
        indentation and padding cost tokens that bytes alone do not show)."""
        if text.isascii():
            size = len(text)
            self.bound += size
            self.estimate += size * ASCII_TOKENS_PER_BYTE + text.count("  ") * TOKENS_PER_DOUBLE_SPACE
        else:
            size, chars = len(text.encode("utf-8", "surrogatepass")), len(text)
            self.bound += size
            self.estimate += (chars * TOKENS_PER_CHAR + (size - chars) * TOKENS_PER_EXTRA_BYTE
                              + text.count("  ") * TOKENS_PER_DOUBLE_SPACE)

    def value(self, value: Any, image_tokens: int) -> None:
        """A JSON value read as text: strings, keys and numbers; an image part is its
        provider's largest image instead of its (base64 or URL) bytes."""
        if isinstance(value, str):
            self.text(value)
        elif isinstance(value, dict):
            if image_tokens and value.get("type") in _IMAGE_PART_TYPES:
                self.fixed(image_tokens)
                return
            self.estimate += len(value) * TOKENS_PER_KEY  # the quotes, colon and comma around each key
            for key, item in value.items():
                self.text(key)
                self.value(item, image_tokens)
        elif isinstance(value, list):
            for item in value:
                self.value(item, image_tokens)
        elif value is None or isinstance(value, bool):
            self.fixed(1)
        else:
            digits = len(repr(value))
            self.fixed(digits, digits * TOKENS_PER_DIGIT)

    def items(self, value: Any) -> None:
        """A completions prompt or embeddings input: strings as text, token arrays by length."""
        if isinstance(value, str):
            self.text(value)
        elif not isinstance(value, list):
            self.value(value, 0)
        elif all(type(item) is int for item in value):
            self.fixed(len(value))
        else:
            for item in value:
                self.items(item)

    def messages(self, messages: Any, image_tokens: int) -> None:
        if not isinstance(messages, list):
            self.value(messages, image_tokens)
            return
        self.fixed(MESSAGE_OVERHEAD_TOKENS * len(messages), MESSAGE_TOKENS * len(messages))
        for message in messages:
            if type(message) is dict and len(message) == 2:  # {role, content: text}: without the generic walk
                content, role = message.get("content"), message.get("role")
                if type(content) is str and type(role) is str:
                    if content.isascii() and role.isascii():  # `text` inlined: most messages take this path
                        size = len(content) + len(role)
                        self.bound += size
                        self.estimate += size * ASCII_TOKENS_PER_BYTE + content.count("  ") * TOKENS_PER_DOUBLE_SPACE
                    else:
                        self.text(content)
                        self.text(role)
                    continue
            self.value(message, image_tokens)

    def rest(self, body: dict[str, Any]) -> None:
        """Fields this module does not know, counted as prompt text (never an underestimate)."""
        for name, value in body.items():
            if name not in _NOT_PROMPT:
                self.text(name)
                self.value(value, 0)

    def worst_case(self, generations: int, cap: int | None, cap_field: str | None, extra_output: int = 0,
                   token_ids: int = 0) -> WorstCase:
        estimate = min(self.bound, max(1, math.ceil(self.estimate)))
        return WorstCase(self.bound, generations, cap, cap_field, extra_output, token_ids, estimate)


def analyse(api: Api, body: dict[str, Any], model: str) -> WorstCase:
    """The worst case of ``body`` as the upstream ``api`` reads it (400 on cap fields that conflict)."""
    if api is Api.CHAT:
        return _chat(body, model)
    if api is Api.MESSAGES:
        return _messages(body)
    if api is Api.COMPLETIONS:
        return _completions(body)
    if api is Api.RESPONSES:
        return _responses(body)
    if api is Api.GENERATE_CONTENT:
        return _generate_content(body)
    if api is Api.CONVERSE:
        return _converse(body)
    if api in _COUNTING:  # counted, never generated or charged
        return WorstCase(0, 1, 0, None)
    items, tally = body.get("input"), _Tally()
    tally.items(items)
    tally.rest(body)
    return tally.worst_case(1, 0, None, token_ids=_token_ids(items))


def with_cap(worst: WorstCase, api: Api, body: dict[str, Any], cap: int) -> str:
    """Set the honoured output cap of ``body`` to ``cap``; returns the field written."""
    if api is Api.GENERATE_CONTENT:  # Gemini's cap sits in generationConfig
        config = body.get("generationConfig")
        body["generationConfig"] = {**(config if isinstance(config, dict) else {}), "maxOutputTokens": cap}
        return _GEMINI_CAP
    if api is Api.CONVERSE:  # Bedrock's cap sits in inferenceConfig
        config = body.get("inferenceConfig")
        body["inferenceConfig"] = {**(config if isinstance(config, dict) else {}), "maxTokens": cap}
        return _CONVERSE_CAP
    name = worst.cap_field or _CAP_FIELDS[api][0]
    body[name] = cap
    return name


def _chat(body: dict[str, Any], model: str) -> WorstCase:
    modern, legacy = body.get("max_completion_tokens"), body.get("max_tokens")
    if modern is not None and legacy is not None:
        raise bad_request("'max_completion_tokens' and 'max_tokens' are both set: send one output cap "
                          "(max_completion_tokens), not both", "max_completion_tokens")
    cap_field = "max_completion_tokens" if modern is not None else "max_tokens" if legacy is not None else None
    cap = _positive(body, cap_field) if cap_field else None
    tally = _Tally()
    tally.messages(body.get("messages"), _openai_image_tokens(model))
    tally.rest(body)
    tally.fixed(REPLY_PRIMING_TOKENS)
    tools, functions = body.get("tools"), body.get("functions")
    if tools or functions:
        tools = _list(tools) + _list(functions)
        tally.fixed(OPENAI_TOOLS_OVERHEAD_TOKENS + OPENAI_PER_TOOL_TOKENS * len(tools))
        tally.value(tools, 0)
    if body.get("tool_choice") is not None:
        tally.value(body["tool_choice"], 0)
    generations = _count(body, "n") if "n" in body else 1
    extra = 0
    if body.get("prediction") is not None:
        prediction = _Tally()
        prediction.value(body["prediction"], 0)
        extra = prediction.bound * generations
    return tally.worst_case(generations, cap, cap_field, extra)


def _generate_content(body: dict[str, Any]) -> WorstCase:
    """Gemini's generateContent: ``candidateCount`` generations, each capped by
    ``maxOutputTokens`` (thinking included); a thinking budget set beside the cap is added
    on top, in case the model spends it apart from the cap."""
    config = body.get("generationConfig")
    if config is None:
        config = {}
    if not isinstance(config, dict):
        raise bad_request("'generationConfig' must be an object", "generationConfig")
    cap = _positive(config, "maxOutputTokens", _GEMINI_CAP) if config.get("maxOutputTokens") is not None else None
    generations = _count(config, "candidateCount", "generationConfig.candidateCount")
    thinking = config.get("thinkingConfig")
    budget = thinking.get("thinkingBudget") if isinstance(thinking, dict) else None
    extra = budget * generations if type(budget) is int and budget > 0 and cap is not None else 0
    tally = _Tally()
    tally.rest(body)  # contents, system instruction and tools, read as text (inline data: its bytes)
    contents = body.get("contents")
    if isinstance(contents, list):
        tally.fixed(MESSAGE_OVERHEAD_TOKENS * len(contents), MESSAGE_TOKENS * len(contents))
    tally.fixed(REPLY_PRIMING_TOKENS)
    return tally.worst_case(generations, cap, _GEMINI_CAP if cap is not None else None, extra)


def _converse(body: dict[str, Any]) -> WorstCase:
    """Bedrock's Converse: one generation capped by ``inferenceConfig.maxTokens``. The
    models behind it vary (Anthropic's among them), so tools add Anthropic's tool-use
    prompt, the largest documented; images are read as their (base64) bytes."""
    config = body.get("inferenceConfig")
    if config is None:
        config = {}
    if not isinstance(config, dict):
        raise bad_request("'inferenceConfig' must be an object", "inferenceConfig")
    cap = _positive(config, "maxTokens", _CONVERSE_CAP) if config.get("maxTokens") is not None else None
    tally = _Tally()
    tally.rest(body)  # toolConfig and fields this module does not know, read as text
    messages = body.get("messages")
    tally.value(messages, 0)  # blocks read as text (image bytes: their base64, more than any model counts)
    if isinstance(messages, list):
        tally.fixed(MESSAGE_OVERHEAD_TOKENS * len(messages), MESSAGE_TOKENS * len(messages))
    if body.get("system") is not None:
        tally.value(body["system"], 0)
        tally.fixed(MESSAGE_OVERHEAD_TOKENS, MESSAGE_TOKENS)
    if isinstance(body.get("toolConfig"), dict) and body["toolConfig"].get("tools"):
        tally.fixed(ANTHROPIC_TOOLS_OVERHEAD_TOKENS, ANTHROPIC_TOOLS_TYPICAL_TOKENS)
    tally.fixed(REPLY_PRIMING_TOKENS)
    return tally.worst_case(1, cap, _CONVERSE_CAP if cap is not None else None)


def _messages(body: dict[str, Any]) -> WorstCase:
    if body.get("max_completion_tokens") is not None:
        raise bad_request("'max_completion_tokens' is not a field of the Messages API: its output cap is "
                          "'max_tokens'", "max_completion_tokens")
    cap = _positive(body, "max_tokens") if body.get("max_tokens") is not None else None
    tally = _Tally()
    tally.messages(body.get("messages"), ANTHROPIC_IMAGE_TOKENS)
    tally.rest(body)
    tally.fixed(REPLY_PRIMING_TOKENS)
    system = body.get("system")
    if system is not None:
        tally.fixed(MESSAGE_OVERHEAD_TOKENS, MESSAGE_TOKENS)
        tally.value(system, ANTHROPIC_IMAGE_TOKENS)
    tools = _list(body.get("tools"))
    if tools:
        builtin = sum(1 for tool in tools if isinstance(tool, dict) and tool.get("type") not in (None, "custom"))
        tally.fixed(ANTHROPIC_TOOLS_OVERHEAD_TOKENS + ANTHROPIC_BUILTIN_TOOL_TOKENS * builtin,
                    ANTHROPIC_TOOLS_TYPICAL_TOKENS + ANTHROPIC_BUILTIN_TOOL_TOKENS * builtin)
        tally.value(tools, 0)
    if body.get("tool_choice") is not None:
        tally.value(body["tool_choice"], 0)
    return tally.worst_case(1, cap, "max_tokens" if cap is not None else None)


def _responses(body: dict[str, Any]) -> WorstCase:
    """The Responses API: ``input`` items, ``instructions`` and tools (counted by `_Tally.rest`),
    one generation capped by ``max_output_tokens`` (reasoning included)."""
    items = body.get("input")
    cap = _positive(body, "max_output_tokens") if body.get("max_output_tokens") is not None else None
    tally = _Tally()
    tally.items(items)
    tally.rest(body)
    tally.fixed(REPLY_PRIMING_TOKENS)
    return tally.worst_case(1, cap, "max_output_tokens" if cap is not None else None, token_ids=_token_ids(items))


def _completions(body: dict[str, Any]) -> WorstCase:
    prompt = body.get("prompt")
    prompts = _prompt_count(prompt)
    # best_of runs that many generations per prompt (and bills them all), returning n of them.
    generations = prompts * max(_count(body, "n"), _count(body, "best_of"))
    cap = _positive(body, "max_tokens") if body.get("max_tokens") is not None else None
    tally = _Tally()
    tally.items(prompt)
    if isinstance(body.get("suffix"), str):
        suffix = _Tally()
        suffix.text(body["suffix"])
        tally.add(suffix, prompts)
    tally.rest(body)
    return tally.worst_case(generations, cap, "max_tokens" if cap is not None else None, token_ids=_token_ids(prompt))


def _token_ids(value: Any) -> int:
    """How many of a prompt's tokens come as token arrays."""
    if not isinstance(value, list) or not value:
        return 0
    if all(type(item) is int for item in value):
        return len(value)
    return sum(len(item) for item in value if isinstance(item, list) and all(type(i) is int for i in item))


def _prompt_count(prompt: Any) -> int:
    """How many prompts a completions `prompt` holds: a string or one token array is one."""
    if not isinstance(prompt, list) or not prompt or all(type(item) is int for item in prompt):
        return 1
    return len(prompt)


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _count(body: dict[str, Any], name: str, field: str | None = None) -> int:
    value = body.get(name)
    if value is None:
        return 1
    if type(value) is not int or not 1 <= value <= 128:
        raise bad_request(f"'{field or name}' must be an integer from 1 to 128", field or name)
    return value


def _positive(body: dict[str, Any], name: str, field: str | None = None) -> int:
    value = body.get(name)
    if type(value) is not int or not 1 <= value <= MAX_OUTPUT_CAP:
        raise bad_request(f"'{field or name}' must be an integer from 1 to {MAX_OUTPUT_CAP}", field or name)
    return value


def _openai_image_tokens(model: str) -> int:
    # Model ids are lower case; another spelling gets the largest figure, which is safe.
    if model.startswith(_OPENAI_IMAGE_FAMILIES) and not model.startswith("gpt-4o-mini"):
        return OPENAI_IMAGE_TOKENS
    return OPENAI_IMAGE_TOKENS_MINI
