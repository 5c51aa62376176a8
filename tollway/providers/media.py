"""The media routes (images, audio, moderations) on a provider: whether its adapter serves
them (`media_apis`), where (its `paths`), and with which headers.

OpenAI and OpenAI-compatible servers: ``{base_url}/images/generations`` and so on.
Azure OpenAI: ``{base_url}/openai/deployments/{deployment}/images/generations?api-version=``
(the deployment from `deployments`, else the model name); Azure has no moderations route
(its content filtering is a separate service). Anthropic serves none of them.
"""

from __future__ import annotations

from tollway.providers.adapters.openai import MEDIA_PATHS
from tollway.providers.client import Api, ProviderClient, ProviderKey

MEDIA_APIS = frozenset(MEDIA_PATHS)
MULTIPART_APIS = frozenset({Api.IMAGES_EDITS, Api.AUDIO_TRANSCRIPTIONS, Api.AUDIO_TRANSLATIONS})


def media_refusal(provider: ProviderClient, api: Api) -> str | None:
    """Why ``provider`` cannot serve ``api`` (the message of a 400), or None when it can."""
    adapter = provider.adapter
    if api in adapter.media_apis:
        return None
    return (f"provider {provider.name!r} ({provider.type}) does not serve POST /v1{MEDIA_PATHS[api]}: "
            f"route this model to an OpenAI or OpenAI-compatible provider" + (adapter.media_note if adapter.media_apis else ""))


def media_url(provider: ProviderClient, api: Api, model: str) -> str:
    """The upstream URL of ``api`` for ``model`` on ``provider`` (Azure: under its deployment)."""
    return provider.url(api, model)


def media_headers(provider: ProviderClient, key: ProviderKey, content_type: str) -> dict[str, str]:
    """The upstream request headers: the provider's auth with the client's content type
    (a multipart body keeps its boundary)."""
    headers = provider.headers(key)
    headers["Content-Type"] = content_type
    return headers
