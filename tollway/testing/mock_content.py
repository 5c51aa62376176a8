"""Deterministic content for the mock upstream: token counts, generated words, tool calls,
embedding vectors. Pure functions, no I/O, so tests can compute the expected numbers.

Token rules (the same for every API family):
- a text is `ceil(len(text) / 4)` tokens; a token array is `len(array)` tokens;
- a chat message is the tokens of its text parts plus 3 (images, tool results and other
  non-text parts count 0); an Anthropic `system` prompt counts as one more message;
- the answer has `min(max_tokens, settings.completion_tokens)` tokens, the words
  `tok0 tok1 ...`, one word per stream chunk.
"""

from __future__ import annotations

import array
import base64
import hashlib
import math
import re
from typing import Any

MESSAGE_OVERHEAD_TOKENS = 3
_WEATHER = re.compile(r"\bweather\b", re.IGNORECASE)


def text_tokens(text: str) -> int:
    """Tokens of a plain text."""
    return math.ceil(len(text) / 4)


def content_texts(content: Any) -> list[str]:
    """The text parts of a message `content` (a string, or a list of typed parts)."""
    if isinstance(content, str):
        return [content]
    if isinstance(content, list):
        return [part["text"] for part in content
                if isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str)]
    return []


def message_tokens(message: Any) -> int:
    """Tokens of one chat message: its text parts plus the per-message overhead."""
    content = message.get("content") if isinstance(message, dict) else None
    return sum(text_tokens(text) for text in content_texts(content)) + MESSAGE_OVERHEAD_TOKENS


def chat_prompt_tokens(messages: list[Any], system: Any = None) -> int:
    """Prompt tokens of a chat request; `system` is Anthropic's top-level system prompt."""
    total = sum(message_tokens(message) for message in messages)
    if system:
        total += sum(text_tokens(text) for text in content_texts(system)) + MESSAGE_OVERHEAD_TOKENS
    return total


def prompt_item_tokens(item: Any) -> int:
    """Tokens of one completion prompt or embedding input: a string or a token array."""
    if isinstance(item, str):
        return text_tokens(item)
    if isinstance(item, list):
        return len(item)
    return 0


def split_prompts(value: Any) -> list[Any]:
    """A completions `prompt` / embeddings `input` as a list of items (strings or token arrays)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        if value and all(isinstance(v, int) for v in value):
            return [value]
        return value
    return []


def answer_tokens(max_tokens: Any, configured: int) -> tuple[int, bool]:
    """How many tokens to generate, and whether `max_tokens` cut the answer short."""
    if isinstance(max_tokens, int) and not isinstance(max_tokens, bool) and max_tokens < configured:
        return max(max_tokens, 0), True
    return configured, False


def answer_words(count: int) -> list[str]:
    """The stream pieces of an answer of `count` tokens; joined they give `answer_text(count)`."""
    return [f"tok{i}" if i == 0 else f" tok{i}" for i in range(count)]


def answer_text(count: int) -> str:
    """The full text of an answer of `count` tokens."""
    return " ".join(f"tok{i}" for i in range(count))


def cached_part(prompt_tokens: int, configured: int) -> int:
    """Prompt tokens reported as cached: the setting, never more than the prompt."""
    return min(prompt_tokens, configured)


def asks_for_weather(messages: list[Any]) -> bool:
    """Whether the last message is a user turn whose text mentions the word "weather"."""
    if not messages or not isinstance(messages[-1], dict) or messages[-1].get("role") != "user":
        return False
    return any(_WEATHER.search(text) for text in content_texts(messages[-1].get("content")))


def tool_arguments(schema: Any) -> dict[str, Any]:
    """Arguments for a tool call, one deterministic value per required (else every) property."""
    if not isinstance(schema, dict) or not isinstance(schema.get("properties"), dict):
        return {}
    properties: dict[str, Any] = schema["properties"]
    required = schema.get("required")
    names = [name for name in required if name in properties] if isinstance(required, list) and required else list(properties)
    return {name: _argument_value(name, properties[name]) for name in names}


def _argument_value(name: str, prop: Any) -> Any:
    kind = prop.get("type") if isinstance(prop, dict) else None
    if isinstance(prop, dict) and isinstance(prop.get("enum"), list) and prop["enum"]:
        return prop["enum"][0]
    if kind in ("number", "integer"):
        return 1
    if kind == "boolean":
        return True
    if kind == "array":
        return []
    if kind == "object":
        return {}
    return "Paris" if name in ("location", "city") else "mock"


def embedding_vector(item: Any, dims: int) -> list[float]:
    """A unit-length float32 vector that depends only on the input item and `dims`."""
    seed = repr(item).encode()
    raw = bytearray()
    block = 0
    while len(raw) < dims * 2:
        raw += hashlib.blake2b(seed, digest_size=64, person=block.to_bytes(16, "little")).digest()
        block += 1
    values = [int.from_bytes(raw[2 * i:2 * i + 2], "little") / 32767.5 - 1.0 for i in range(dims)]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    # Round through float32 so the float and base64 encodings give identical numbers.
    return array.array("f", [v / norm for v in values]).tolist()


def embedding_base64(vector: list[float]) -> str:
    """The OpenAI base64 encoding of a vector: little-endian float32 bytes."""
    return base64.b64encode(array.array("f", vector).tobytes()).decode()
