"""OpenAI and every OpenAI-compatible server: by base URL, or a preset by name."""

from __future__ import annotations

from types import MappingProxyType
from typing import TYPE_CHECKING

from tollway.providers.adapters.base import OPENAI_BATCHES, ProviderAdapter
from tollway.providers.apis import Api
from tollway.providers.presets import Preset

if TYPE_CHECKING:
    from tollway.config.schema import ProviderSettings

MEDIA_PATHS = MappingProxyType({
    Api.IMAGES_GENERATIONS: "/images/generations", Api.IMAGES_EDITS: "/images/edits",
    Api.AUDIO_TRANSCRIPTIONS: "/audio/transcriptions", Api.AUDIO_TRANSLATIONS: "/audio/translations",
    Api.AUDIO_SPEECH: "/audio/speech", Api.MODERATIONS: "/moderations"})
"""Each media API's path below ``/v1`` (the gateway's and OpenAI's)."""
OPENAI_PATHS = MappingProxyType({
    Api.CHAT: "/chat/completions", Api.COMPLETIONS: "/completions", Api.EMBEDDINGS: "/embeddings",
    Api.RESPONSES: "/responses", Api.RESPONSES_INPUT_TOKENS: "/responses/input_tokens", **MEDIA_PATHS})
_NATIVE = frozenset({Api.CHAT, Api.COMPLETIONS, Api.EMBEDDINGS})


class OpenAIAdapter(ProviderAdapter):
    """`type: openai`: api.openai.com, or any server that speaks its API (`base_url`).

    An unknown server's models are looked up in the price catalog under OpenAI's id, then
    by name alone (a local server serving a known open model)."""

    default_base_url = "https://api.openai.com/v1"
    price_catalog_ids = ("openai", None)
    native_apis = _NATIVE
    paths = OPENAI_PATHS
    media_apis = frozenset(MEDIA_PATHS)
    serves_responses_api_by_default = True
    batch_api = OPENAI_BATCHES


class PresetAdapter(ProviderAdapter):
    """An OpenAI-compatible service known by name (`type: groq`): its base URL, catalog id
    and whether it needs a key come from its `Preset`. Presets serve chat, not the
    Responses API, unless the config says `responses_api: true`."""

    native_apis = _NATIVE
    paths = OPENAI_PATHS
    media_apis = frozenset(MEDIA_PATHS)

    def __init__(self, preset: Preset) -> None:
        self.default_base_url = preset.base_url
        self.price_catalog_ids = (preset.price_catalog_id, None) if preset.price_catalog_id else (None,)
        self.needs_key = preset.needs_key

    def check(self, settings: ProviderSettings) -> None:
        return None  # responses_api: true is how a preset says it serves the Responses API
