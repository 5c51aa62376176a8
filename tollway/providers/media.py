"""Where each provider type serves the media routes (images, audio, moderations), and
which it does not serve: the per-provider knowledge of those routes, in one place.

OpenAI and OpenAI-compatible servers: ``{base_url}/images/generations`` and so on.
Azure OpenAI: ``{base_url}/openai/deployments/{deployment}/images/generations?api-version=``
(the deployment from `deployments`, else the model name); Azure has no moderations route
(its content filtering is a separate service). Anthropic serves none of them.
"""

from __future__ import annotations

from tollway.providers.client import Api, ProviderClient, ProviderKey

MEDIA_APIS = frozenset({Api.IMAGES_GENERATIONS, Api.IMAGES_EDITS, Api.AUDIO_TRANSCRIPTIONS, Api.AUDIO_TRANSLATIONS,
                        Api.AUDIO_SPEECH, Api.MODERATIONS})
MULTIPART_APIS = frozenset({Api.IMAGES_EDITS, Api.AUDIO_TRANSCRIPTIONS, Api.AUDIO_TRANSLATIONS})

MEDIA_PATHS = {Api.IMAGES_GENERATIONS: "/images/generations", Api.IMAGES_EDITS: "/images/edits",
               Api.AUDIO_TRANSCRIPTIONS: "/audio/transcriptions", Api.AUDIO_TRANSLATIONS: "/audio/translations",
               Api.AUDIO_SPEECH: "/audio/speech", Api.MODERATIONS: "/moderations"}
"""Each media API's path below ``/v1`` (the gateway's and OpenAI's)."""

_NOT_SERVED = {
    "anthropic": frozenset(MEDIA_APIS),
    "azure": frozenset({Api.MODERATIONS}),
}


def media_refusal(provider: ProviderClient, api: Api) -> str | None:
    """Why ``provider`` cannot serve ``api`` (the message of a 400), or None when it can."""
    if api in _NOT_SERVED.get(provider.type, ()):
        return (f"provider {provider.name!r} ({provider.type}) does not serve POST /v1{MEDIA_PATHS[api]}: "
                f"route this model to an OpenAI or OpenAI-compatible provider"
                + ("" if provider.type == "anthropic" or api is not Api.MODERATIONS else
                   " (Azure OpenAI has no moderations endpoint)"))
    return None


def media_url(provider: ProviderClient, api: Api, model: str) -> str:
    """The upstream URL of ``api`` for ``model`` on ``provider``."""
    path = MEDIA_PATHS[api]
    if provider.type == "azure":
        deployment = provider.settings.deployments.get(model, model)
        return (f"{provider.base_url}/openai/deployments/{deployment}{path}"
                f"?api-version={provider.settings.api_version}")
    return provider.base_url + path


def media_headers(provider: ProviderClient, key: ProviderKey, content_type: str) -> dict[str, str]:
    """The upstream request headers: the provider's auth with the client's content type
    (a multipart body keeps its boundary)."""
    headers = provider.headers(key)
    headers["Content-Type"] = content_type
    return headers
