"""AWS Bedrock (bedrock-runtime): requests signed with SigV4 (no API key), the model id in
the URL (`/model/{modelId}/converse`, `/converse-stream`, `/invoke`), streams in AWS's
event-stream framing, one region per provider."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from tollway.providers.adapters.base import ProviderAdapter
from tollway.providers.adapters.bedrock_signing import SigV4Signer, require_botocore
from tollway.providers.apis import Api

if TYPE_CHECKING:
    from tollway.config.schema import ProviderSettings


def counts_tokens(model: str) -> bool:
    """Whether Bedrock's CountTokens serves ``model``: Anthropic's models (``anthropic.…``,
    with or without a cross-region prefix such as ``us.``)."""
    return ".anthropic." in f".{model}"


class BedrockAdapter(ProviderAdapter):
    """`type: bedrock`. Every chat-shaped client API reaches Converse through chat (the
    internal form); `/v1/embeddings` reaches InvokeModel with the model family's body.

    Bedrock has a model list (`bedrock`'s ListFoundationModels) on another host and API:
    it is not asked; the catalog lists the models the configuration names."""

    needs_key = False
    price_catalog_ids = ("aws", None)
    native_apis = frozenset({Api.CONVERSE, Api.INVOKE_MODEL, Api.BEDROCK_COUNT_TOKENS})
    translation_api = Api.CONVERSE
    models_path = None
    routes_by_model = True  # Anthropic models count tokens with Bedrock's CountTokens; others are estimated

    def base_url(self, settings: ProviderSettings) -> str:
        return super().base_url(settings) or f"https://bedrock-runtime.{settings.region}.amazonaws.com"

    def check(self, settings: ProviderSettings) -> None:
        require_botocore()
        if not settings.region:
            raise ValueError("a bedrock provider needs region (e.g. region: us-east-1)")
        if bool(settings.aws_access_key_id) != bool(settings.aws_secret_access_key):
            raise ValueError("aws_access_key_id and aws_secret_access_key go together: set both or neither")
        if settings.aws_session_token and not settings.aws_access_key_id:
            raise ValueError("aws_session_token needs aws_access_key_id and aws_secret_access_key")
        if settings.profile and settings.aws_access_key_id:
            raise ValueError("set either profile or aws_access_key_id/aws_secret_access_key, not both")

    def upstream_api(self, settings: ProviderSettings, api: Api, model: str = "") -> Api:
        # Embeddings are InvokeModel's; counting is CountTokens' for the models it serves
        # (Anthropic's); every other client API is translated through Converse.
        if api is Api.EMBEDDINGS:
            return Api.INVOKE_MODEL
        if (api is Api.COUNT_TOKENS or api is Api.RESPONSES_INPUT_TOKENS) and counts_tokens(model):
            return Api.BEDROCK_COUNT_TOKENS
        return super().upstream_api(settings, api, model)

    def url(self, base: str, settings: ProviderSettings, api: Api, model: str, stream: bool) -> str:
        # The model id is the client's: quoted whole (`:` too, as the AWS SDKs do), so it
        # cannot leave its path segment; "." and ".." would be read as dot segments.
        segment = quote(model, safe="-._~")
        if not segment.strip("."):
            segment = segment.replace(".", "%2E")
        path = f"{base}/model/{segment}"
        if api is Api.INVOKE_MODEL:
            return path + "/invoke"
        if api is Api.BEDROCK_COUNT_TOKENS:
            return path + "/count-tokens"
        return path + ("/converse-stream" if stream else "/converse")

    def auth_headers(self, key: str) -> dict[str, str]:
        return {}  # every request is signed instead (`request_signer`)

    def request_signer(self, settings: ProviderSettings) -> SigV4Signer:
        return SigV4Signer(settings)

    def listed_models(self, body: Mapping[str, Any]) -> list[str]:
        return []
