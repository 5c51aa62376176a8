"""The `providers` section (each upstream provider: its type, keys, endpoints, credentials,
retries and egress) and the `egress` section (the environment's proxy settings)."""

from __future__ import annotations

from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from tollway.config.fields import NonEmpty, StrictModel, check_duration
from tollway.config.limits import Governed
from tollway.providers.adapters import adapter_for


class ProviderKeyConfig(StrictModel):
    value: str = Field(min_length=1, repr=False)
    id: NonEmpty | None = None  # named in a virtual key's allowed_keys; defaults to key-<index>
    weight: Annotated[float, Field(gt=0, le=1_000_000)] = 1.0
    models: list[NonEmpty] = []  # empty = every model


# The types of `providers.adapters.ADAPTERS`: openai, azure, anthropic, gemini, bedrock, vertex, then the
# OpenAI-compatible presets of `providers.presets` (a unit test keeps the lists equal).
ProviderType = Literal["openai", "azure", "anthropic", "gemini", "bedrock", "vertex", "mistral", "groq", "deepseek",
                       "together", "fireworks", "openrouter", "xai", "cerebras", "perplexity", "ollama", "vllm"]


class ProviderSettings(Governed):
    type: ProviderType
    base_url: str | None = None
    keys: list[ProviderKeyConfig] = []  # at least one, except for local presets (ollama, vllm)
    api_version: str | None = None  # azure
    deployments: dict[str, str] = {}  # azure: model -> deployment (default: the model name)
    # vertex: the Google Cloud project and region (location) of Vertex AI, the service
    # account's JSON key (inline, as env.NAME gives it, or a file's path; unset: Application
    # Default Credentials), and which publisher serves a model its name does not tell.
    project: str | None = None
    region: str | None = None
    credentials: str | None = Field(default=None, repr=False)
    publishers: dict[str, Literal["google", "anthropic"]] = {}
    timeout: str = "60s"
    connect_timeout: str = "5s"
    max_retries: Annotated[int, Field(ge=0, le=10)] = 0
    retry_backoff: Annotated[float, Field(ge=0, le=60)] = 0.5  # seconds before the first retry; doubles each time
    headers: dict[str, str] = {}
    # Egress: an http:// forward proxy for this provider ("none": direct, whatever the
    # environment says; unset: HTTPS_PROXY / HTTP_PROXY / NO_PROXY), a CA bundle to trust
    # instead of the system's, a client certificate (and its key) for mutual TLS.
    proxy: str | None = None
    ca_bundle: str | None = None
    client_cert: str | None = None
    client_key: str | None = None
    # Whether the provider serves OpenAI's Responses API itself (default: yes for openai and
    # azure, no for the presets). false: /v1/responses is translated to chat completions
    # (servers that only have chat). Anthropic providers are always translated.
    responses_api: bool | None = None
    responses_api_version: str = "2025-04-01-preview"  # azure: the api-version of /openai/responses
    # bedrock: the AWS region (`region` above), and the credentials (explicit values, a named
    # profile, or botocore's default chain; role_arn: assumed through STS with those as the source)
    profile: NonEmpty | None = None
    aws_access_key_id: NonEmpty | None = Field(None, repr=False)
    aws_secret_access_key: NonEmpty | None = Field(None, repr=False)
    aws_session_token: str | None = Field(None, repr=False, min_length=1)
    role_arn: NonEmpty | None = None

    _check_durations = field_validator("timeout", "connect_timeout")(check_duration)

    @field_validator("proxy")
    @classmethod
    def _proxy_url(cls, value: str | None) -> str | None:
        return value if value is None or value.strip().lower() in ("none", "direct") else _http_proxy_url(value)

    @model_validator(mode="after")
    def _keys(self) -> ProviderSettings:
        if not self.keys:
            if adapter_for(self.type).needs_key:
                raise ValueError(f"a {self.type} provider needs at least one key: keys: [{{value: env.API_KEY}}]")
            self.keys = [ProviderKeyConfig(value="unused")]  # a local server: any bearer token does
        return self

    @model_validator(mode="before")
    @classmethod
    def _one_transport(cls, data: Any) -> Any:
        # `http_client` chose between two upstream clients until the aiohttp one was
        # removed; say so rather than "extra inputs are not permitted".
        if isinstance(data, dict) and "http_client" in data:
            raise ValueError("http_client was removed: Tollway has one upstream HTTP client (proxies, CA bundles and "
                             "mutual TLS included); delete the setting")
        return data

    @model_validator(mode="after")
    def _client_key_needs_cert(self) -> ProviderSettings:
        if self.client_key and not self.client_cert:
            raise ValueError("client_key needs client_cert")
        return self

    @model_validator(mode="after")
    def _type_needs(self) -> ProviderSettings:
        adapter_for(self.type).check(self)  # what this type needs (azure: base_url, api_version ...)
        return self


def _http_proxy_url(value: str) -> str:
    parts = urlsplit(value if "://" in value else f"http://{value}")
    if parts.scheme.lower() != "http" or not parts.hostname:
        raise ValueError(f"{value!r} is not an http://[user:password@]host:port proxy URL")
    try:
        parts.port  # noqa: B018 - raises for a port that is not a number
    except ValueError:
        raise ValueError(f"{value!r} has an invalid port") from None
    return value


class EgressConfig(StrictModel):
    """The environment's proxy settings, as the loader read them (HTTPS_PROXY, HTTP_PROXY,
    NO_PROXY, upper or lower case) unless the file sets them; a provider's `proxy` wins."""

    http_proxy: str | None = None
    https_proxy: str | None = None
    no_proxy: str | None = None

    @field_validator("http_proxy", "https_proxy")
    @classmethod
    def _proxy_url(cls, value: str | None) -> str | None:
        return value if not value else _http_proxy_url(value)
