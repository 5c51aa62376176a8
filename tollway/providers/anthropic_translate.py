"""Translation between OpenAI's Chat Completions API and Anthropic's Messages API.

Both directions, streaming included, as pure functions and small per-stream translator
classes over parsed JSON: no I/O. The implementation is split by direction:

- an OpenAI client calling a Claude model: `chat_request_to_messages`,
  `messages_response_to_chat`, `MessagesStreamToChat`;
- an Anthropic client calling an OpenAI model: `messages_request_to_chat`,
  `chat_response_to_messages`, `ChatStreamToMessages`.

Requests that cannot be expressed raise `TranslationError` (a ``ValueError``: answer 400);
an error inside an upstream stream raises `UpstreamStreamError`.
"""

from __future__ import annotations

from tollway.providers._chat_options_to_messages import tokens_added_by_thinking
from tollway.providers._chat_request_to_messages import (
    chat_request_to_messages,
    messages_response_to_chat,
)
from tollway.providers._chat_stream_to_messages import ChatStreamToMessages, StreamEvent
from tollway.providers._messages_request_to_chat import (
    chat_response_to_messages,
    messages_request_to_chat,
)
from tollway.providers._messages_stream_to_chat import MessagesStreamToChat
from tollway.providers._translate_common import TranslationError, UpstreamStreamError

__all__ = [
    "ChatStreamToMessages",
    "MessagesStreamToChat",
    "StreamEvent",
    "TranslationError",
    "UpstreamStreamError",
    "chat_request_to_messages",
    "chat_response_to_messages",
    "messages_request_to_chat",
    "messages_response_to_chat",
    "tokens_added_by_thinking",
]
