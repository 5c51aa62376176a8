"""Azure OpenAI: deployments in the URL, an `api-version` query, the key as `api-key`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from tollway.providers.adapters.base import OPENAI_BATCHES, ProviderAdapter
from tollway.providers.adapters.openai import MEDIA_PATHS, OPENAI_PATHS
from tollway.providers.apis import Api

if TYPE_CHECKING:
    from tollway.config.schema import ProviderSettings


class AzureAdapter(ProviderAdapter):
    """`type: azure`. Azure's catalog falls back to OpenAI's prices (same models).

    Deployments are named by the operator, so the model list is not asked for: the
    catalog lists the configured `deployments` instead."""

    price_catalog_ids = ("azure", "openai", None)
    native_apis = frozenset({Api.CHAT, Api.COMPLETIONS, Api.EMBEDDINGS})
    paths = OPENAI_PATHS
    media_apis = frozenset(MEDIA_PATHS) - {Api.MODERATIONS}
    media_note = " (Azure OpenAI has no moderations endpoint: its content filtering is a separate service)"
    serves_responses_api_by_default = True
    models_path = None
    batch_api = OPENAI_BATCHES  # Azure OpenAI's global batch: /openai/files and /openai/batches

    def check(self, settings: ProviderSettings) -> None:
        if not settings.base_url or not settings.api_version:
            raise ValueError("an azure provider needs base_url and api_version")

    def url(self, base: str, settings: ProviderSettings, api: Api, model: str, stream: bool) -> str:
        if api is Api.RESPONSES or api is Api.RESPONSES_INPUT_TOKENS:  # the deployment is the body's model
            return self.responses_url(base, settings, "" if api is Api.RESPONSES else "/input_tokens")
        deployment = settings.deployments.get(model, model)
        return f"{base}/openai/deployments/{deployment}{OPENAI_PATHS[api]}?api-version={settings.api_version}"

    def responses_url(self, base: str, settings: ProviderSettings, suffix: str) -> str:
        return f"{base}/openai/responses{suffix}?api-version={settings.responses_api_version}"

    def batch_url(self, base: str, settings: ProviderSettings, path: str) -> str:
        return f"{base}/openai{path}?api-version={settings.api_version}"

    def upstream_model(self, settings: ProviderSettings, model: str) -> str:
        return settings.deployments.get(model, model)

    def auth_headers(self, key: str) -> dict[str, str]:
        return {"api-key": key}

    def listed_models(self, body: Mapping[str, Any]) -> list[str]:
        return []
