"""OpenAI-compatible providers known by name: `type: groq` needs only a key.

Each preset fills in what an operator would otherwise look up: the API's base URL, the
provider's id in the genai-prices catalog (so its models are priced without a `pricing:`
entry), and whether it needs a key at all (local servers do not). `base_url` in the
config still wins, which is how tests point a preset at the mock provider.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType


@dataclass(frozen=True, slots=True)
class Preset:
    base_url: str
    price_catalog_id: str | None  # genai-prices provider id; None: models are looked up by name alone
    needs_key: bool = True


PRESETS = MappingProxyType({
    "mistral": Preset("https://api.mistral.ai/v1", "mistral"),
    "groq": Preset("https://api.groq.com/openai/v1", "groq"),
    "deepseek": Preset("https://api.deepseek.com/v1", "deepseek"),
    "together": Preset("https://api.together.xyz/v1", "together"),
    "fireworks": Preset("https://api.fireworks.ai/inference/v1", "fireworks"),
    "openrouter": Preset("https://openrouter.ai/api/v1", "openrouter"),
    "xai": Preset("https://api.x.ai/v1", "x-ai"),
    "cerebras": Preset("https://api.cerebras.ai/v1", "cerebras"),
    "perplexity": Preset("https://api.perplexity.ai", "perplexity"),
    "ollama": Preset("http://127.0.0.1:11434/v1", None, needs_key=False),
    "vllm": Preset("http://127.0.0.1:8000/v1", None, needs_key=False),
})
