"""The wire APIs the gateway knows: what a client speaks, or what a provider speaks.

A leaf module (no imports from the rest of Tollway), so the configuration schema and the
provider adapters can name APIs without importing the provider client.
"""

from __future__ import annotations

import enum


class Api(str, enum.Enum):
    """The wire API of a request: what the client speaks, or what a provider speaks."""

    CHAT = "chat"
    COMPLETIONS = "completions"
    EMBEDDINGS = "embeddings"
    MESSAGES = "messages"  # Anthropic
    RESPONSES = "responses"  # OpenAI's Responses API
    COUNT_TOKENS = "count_tokens"  # Anthropic's /v1/messages/count_tokens
    RESPONSES_INPUT_TOKENS = "responses_input_tokens"  # OpenAI's /v1/responses/input_tokens
    GENERATE_CONTENT = "generate_content"  # Google's models/{model}:generateContent (and its stream)
    EMBED_CONTENT = "embed_content"  # Google's models/{model}:embedContent
    GEMINI_COUNT_TOKENS = "gemini_count_tokens"  # Google's models/{model}:countTokens
    CONVERSE = "converse"  # AWS Bedrock's /model/{modelId}/converse (and /converse-stream)
    INVOKE_MODEL = "invoke_model"  # AWS Bedrock's /model/{modelId}/invoke (embeddings)
    BEDROCK_COUNT_TOKENS = "bedrock_count_tokens"  # AWS Bedrock's /model/{modelId}/count-tokens
    VERTEX_PREDICT = "vertex_predict"  # Vertex AI's models/{model}:predict (text-embedding models)
    IMAGES_GENERATIONS = "images.generations"
    IMAGES_EDITS = "images.edits"  # multipart
    AUDIO_TRANSCRIPTIONS = "audio.transcriptions"  # multipart
    AUDIO_TRANSLATIONS = "audio.translations"  # multipart
    AUDIO_SPEECH = "audio.speech"  # a binary answer
    MODERATIONS = "moderations"

    @property
    def anthropic_shaped(self) -> bool:
        """Whether clients of this API expect Anthropic's error shapes."""
        return self is Api.MESSAGES or self is Api.COUNT_TOKENS

    @property
    def google_shaped(self) -> bool:
        """Whether clients of this API expect Google's error shape."""
        return self is Api.GENERATE_CONTENT

    @property
    def aws_shaped(self) -> bool:
        """Whether clients of this API expect AWS's error shape (and event-stream framing)."""
        return self is Api.CONVERSE
