"""Exchanges that only Vertex AI needs; everything else of Vertex reuses the Gemini and
Anthropic exchanges, with the adapter's body tweak (`AdaptedBody`).

- `EmbeddingsViaVertexPredict`: OpenAI embeddings client, a Vertex `text-embedding-*`
  model, which embeds through `:predict` (`instances` in, `predictions` out, each with its
  token count: the usage charged).
- `AdaptedBody`: any exchange whose upstream body the provider's adapter adjusts (a Claude
  body on Vertex names no model and carries `anthropic_version`).
"""

from __future__ import annotations

from typing import Any

import orjson

from tollway.providers._translate_common import TranslationError
from tollway.providers.client import Api, ProviderClient
from tollway.proxy.gemini_exchanges import openai_error_from_gemini
from tollway.proxy.passthrough import Exchange, StreamConverter, load_object
from tollway.proxy.request import ClientRequest
from tollway.usage import Usage


class EmbeddingsViaVertexPredict:
    """`/v1/embeddings` → `{model}:predict`: each input one instance, `dimensions` as
    `outputDimensionality`; the answer's `statistics.token_count` is the usage."""

    upstream_api = Api.VERTEX_PREDICT

    def upstream_body(self, request: ClientRequest, model: str) -> dict[str, Any]:
        texts = request.body.get("input")
        if isinstance(texts, str):
            texts = [texts]
        if not isinstance(texts, list) or not texts or not all(isinstance(text, str) for text in texts):
            raise TranslationError("a Vertex AI embedding model embeds text: 'input' must be a string or a "
                                   "list of strings (not token ids)", field="input")
        body: dict[str, Any] = {"instances": [{"content": text} for text in texts]}
        if request.body.get("dimensions") is not None:
            body["parameters"] = {"outputDimensionality": request.body["dimensions"]}
        return body

    def request_body(self, request: ClientRequest, model: str) -> bytes:
        return orjson.dumps(self.upstream_body(request, model))

    def response(self, data: bytes, model: str) -> tuple[bytes, Usage | None]:
        predictions = (load_object(data) or {}).get("predictions")
        if not isinstance(predictions, list):  # a 502 naming the provider
            raise TranslationError("the predict answer holds no predictions")
        vectors, tokens = [], 0
        for index, prediction in enumerate(predictions):
            embeddings = prediction.get("embeddings") if isinstance(prediction, dict) else None
            if not isinstance(embeddings, dict) or not isinstance(embeddings.get("values"), list):
                raise TranslationError(f"prediction {index} of the predict answer holds no embedding values")
            values = embeddings["values"]
            vectors.append({"object": "embedding", "index": index, "embedding": values})
            count = (embeddings.get("statistics") or {}).get("token_count")
            tokens += int(count) if isinstance(count, int | float) else 0
        out = {"object": "list", "data": vectors, "model": model,
               "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
        return orjson.dumps(out), Usage(tokens, 0) if tokens else None  # no counts: the estimate is charged

    def stream(self, request: ClientRequest, model: str) -> StreamConverter:
        raise NotImplementedError  # embeddings are never streamed

    def error(self, status: int, data: bytes) -> bytes:
        return openai_error_from_gemini(status, data)


class AdaptedBody:
    """``inner`` with its upstream body passed through the provider adapter's `tweak_body`
    (on a copy: the client's body stays as it came, for a fallback to another provider)."""

    def __init__(self, inner: Exchange, provider: ProviderClient) -> None:
        self.inner = inner
        self.upstream_api = inner.upstream_api
        self._adapter = provider.adapter
        self._settings = provider.settings

    def upstream_body(self, request: ClientRequest, model: str) -> dict[str, Any]:
        body = dict(self.inner.upstream_body(request, model))
        return self._adapter.tweak_body(self._settings, self.upstream_api, model, body)

    def request_body(self, request: ClientRequest, model: str) -> bytes:
        return orjson.dumps(self.upstream_body(request, model))

    def response(self, data: bytes, model: str) -> tuple[bytes, Usage | None]:
        return self.inner.response(data, model)

    def stream(self, request: ClientRequest, model: str) -> StreamConverter:
        return self.inner.stream(request, model)

    def error(self, status: int, data: bytes) -> bytes:
        return self.inner.error(status, data)
