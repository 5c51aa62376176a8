"""A chat conversation walked turn by turn for a provider that takes system text apart
and alternating user/model turns of content blocks (Gemini's contents, Bedrock's Converse
messages): the walk is shared, each provider writes its own blocks (`TurnWriter`).

Pure: dicts in, dicts out; what cannot be sent raises `TranslationError` naming the field.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from tollway.providers._translate_common import JSON, TranslationError, parse_arguments, text_of


class TurnWriter(Protocol):
    """How one provider writes the blocks of a turn."""

    target: str  # "a Gemini model": named in refusals
    model_role: str  # the role of the model's own turns
    blocks_key: str  # where a turn's blocks go

    def image(self, image: Any, where: str) -> JSON: ...

    def assistant(self, message: Mapping[str, Any], where: str) -> list[JSON]: ...

    def tool_result(self, message: Mapping[str, Any], where: str) -> JSON: ...


def chat_turns(messages: Any, writer: TurnWriter) -> tuple[list[str], list[JSON]]:
    """System texts, and the turns (same-role turns merged: the providers require user and
    model turns to alternate, and several tool results answer one model turn together)."""
    if not isinstance(messages, list):
        raise TranslationError("messages must be an array of messages", field="messages")
    system: list[str] = []
    turns: list[JSON] = []
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        role = message.get("role") if isinstance(message, Mapping) else None
        if role in ("system", "developer"):
            system.append(text_of(message.get("content")))
            continue
        if role == "user":
            turn, blocks = "user", user_blocks(message.get("content"), where, writer)
        elif role == "assistant":
            turn, blocks = writer.model_role, writer.assistant(message, where)
        elif role == "tool":
            turn, blocks = "user", [writer.tool_result(message, where)]
        else:
            raise TranslationError(f"{where}.role {role!r} cannot be sent to {writer.target}", field="messages")
        if turns and turns[-1]["role"] == turn:
            turns[-1][writer.blocks_key].extend(blocks)
        else:
            turns.append({"role": turn, writer.blocks_key: blocks})
    if not turns:
        raise TranslationError("messages must hold at least one user or assistant message", field="messages")
    return system, turns


def user_blocks(content: Any, where: str, writer: TurnWriter) -> list[JSON]:
    """A user message's text and image parts as the provider's blocks."""
    if isinstance(content, str):
        return [{"text": content}]
    if not isinstance(content, list):
        raise TranslationError(f"{where}.content must be a string or an array of parts", field="messages")
    blocks: list[JSON] = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, Mapping) else None
        if kind == "text":
            blocks.append({"text": part.get("text") or ""})
        elif kind == "image_url":
            blocks.append(writer.image(part.get("image_url"), f"{where}.content[{j}]"))
        else:
            raise TranslationError(f"{where}.content[{j}].type {kind!r} cannot be sent to {writer.target} "
                                   "(only text and image_url parts)", field="messages")
    return blocks


def data_url(image: Any, where: str, target: str) -> tuple[str, str]:
    """The media type and base64 data of an image part's ``data:`` URL (the providers take
    an image's bytes, not a link to fetch)."""
    url = image.get("url") if isinstance(image, Mapping) else image
    if not isinstance(url, str) or not url.startswith("data:") or ";base64," not in url:
        raise TranslationError(f"{where}: {target} takes images as data: URLs (base64); fetch the image "
                               "and send its bytes", field="messages")
    mime, data = url[5:].split(";base64,", 1)
    return mime, data


def tool_output(message: Mapping[str, Any], where: str) -> tuple[str, Any]:
    """A tool message's text, and the JSON object it holds (None when it holds none: the
    providers take an object result as structured data, anything else as text)."""
    text = text_of(message.get("content"))
    if not text.lstrip().startswith("{"):
        return text, None
    try:
        return text, parse_arguments(text, where)
    except TranslationError:
        return text, None
