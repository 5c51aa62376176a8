"""OpenAI embeddings ⇄ Bedrock InvokeModel bodies of the embedding model families:
Amazon Titan text embeddings (`amazon.titan-embed-text-v1`, `-v2:0`: one text a call)
and Cohere embed (`cohere.embed-*`: up to 96 texts a call).

Pure: dicts in, dicts out. The model id may carry a cross-region prefix (`us.`, `eu.` ...).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tollway.providers._translate_common import JSON, TranslationError
from tollway.usage import Usage

TITAN_V2_DIMENSIONS = (256, 512, 1024)
COHERE_MAX_TEXTS = 96
_REGION_PREFIXES = ("us.", "eu.", "apac.", "us-gov.", "jp.", "au.", "ca.", "global.")
_ALLOWED = frozenset({"model", "input", "encoding_format", "dimensions", "user"})


def model_family(model: str) -> str:
    """``titan`` or ``cohere`` for an embedding model id; TranslationError otherwise."""
    base = model
    for prefix in _REGION_PREFIXES:
        if base.startswith(prefix):
            base = base[len(prefix):]
            break
    if base.startswith("amazon.titan-embed-text"):
        return "titan-v1" if base.startswith("amazon.titan-embed-text-v1") else "titan"
    if base.startswith("cohere.embed"):
        return "cohere"
    raise TranslationError(f"model {model!r} is not a Bedrock embedding model this gateway translates to "
                           "(amazon.titan-embed-text-*, cohere.embed-*)", field="model")


def embeddings_request(body: Mapping[str, Any], model: str) -> JSON:
    """The InvokeModel body of an OpenAI embeddings request for ``model``."""
    unknown = sorted(name for name in body if name not in _ALLOWED and body[name] is not None)
    if unknown:
        raise TranslationError(f"{unknown[0]!r} cannot be sent to a Bedrock embedding model", field=unknown[0])
    if body.get("encoding_format") not in (None, "float", "base64"):
        raise TranslationError("encoding_format must be float or base64", field="encoding_format")
    texts = _texts(body.get("input"))
    family, dimensions = model_family(model), body.get("dimensions")
    if family == "cohere":
        if len(texts) > COHERE_MAX_TEXTS:
            raise TranslationError(f"a Cohere model on Bedrock embeds at most {COHERE_MAX_TEXTS} texts a request",
                                   field="input")
        out: JSON = {"texts": texts, "input_type": "search_document", "embedding_types": ["float"]}
        if dimensions is not None:
            out["output_dimension"] = dimensions
        return out
    if len(texts) != 1:
        raise TranslationError("a Titan embedding model embeds one text per request: 'input' must be a string",
                               field="input")
    out = {"inputText": texts[0]}
    if dimensions is not None:
        if family == "titan-v1" or dimensions not in TITAN_V2_DIMENSIONS:
            raise TranslationError(f"dimensions must be one of {TITAN_V2_DIMENSIONS} (Titan text embeddings v2)",
                                   field="dimensions")
        out["dimensions"] = dimensions
    return out


def _texts(value: Any) -> list[str]:
    texts = [value] if isinstance(value, str) else value
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) and t for t in texts):
        raise TranslationError("input must be a non-empty string or array of strings (token arrays cannot be sent "
                               "to a Bedrock model)", field="input")
    return texts


def embeddings_response(body: Mapping[str, Any], model: str = "") -> tuple[JSON, Usage | None] | None:
    """The OpenAI embeddings answer of a Titan or Cohere response for ``model`` (None when
    it is neither: InvokeModel's answer does not name the model).
    Vectors are floats whatever `encoding_format` asked: the answer is read without the
    request, and the OpenAI SDKs accept floats where they asked for base64."""
    if isinstance(body.get("embedding"), list):  # Titan
        vectors = [body["embedding"]]
        tokens = body.get("inputTextTokenCount")
        usage = Usage(prompt_tokens=tokens) if isinstance(tokens, int) and tokens >= 0 else None
    else:
        embeddings = body.get("embeddings")
        if isinstance(embeddings, Mapping):  # Cohere with embedding_types
            embeddings = embeddings.get("float")
        if not isinstance(embeddings, list):
            return None
        vectors, usage = embeddings, None  # Cohere's body has no count: the estimate is charged
    data = [{"object": "embedding", "index": i, "embedding": vector} for i, vector in enumerate(vectors)]
    count = usage.prompt_tokens if usage is not None else 0
    return {"object": "list", "data": data, "model": model, "usage": {"prompt_tokens": count, "total_tokens": count}}, usage

