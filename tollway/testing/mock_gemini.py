"""Gemini routes of the mock upstream (Google's Generative Language API, v1beta):
`models/{model}:generateContent`, `:streamGenerateContent` (SSE, `alt=sse`),
`:embedContent`, `:countTokens` and `GET /v1beta/models`.

The key comes as `x-goog-api-key` or `?key=`. Unknown top-level fields are refused as
Google refuses them ("Invalid JSON payload received. Unknown name ..."), so a gateway that
leaves an OpenAI field (or `model`) in a body is caught. Content follows `mock_content`'s
rules (`contents` parts read like chat messages); a function is called when
`toolConfig.functionCallingConfig.mode` is `ANY` or the last user turn asks about the
weather. Usage: `promptTokenCount` includes `cachedContentTokenCount`; a positive
`thinkingConfig.thinkingBudget` adds `thoughtsTokenCount` (`THOUGHT_TOKENS`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from tollway.testing import mock_content as content
from tollway.testing.mock_http import MockCall, endpoint, error_response, send_json, send_sse, sse_data

MODELS = ("gemini-2.5-flash", "gemini-2.0-flash", "text-embedding-004")
THOUGHT_TOKENS = 12
_FIELDS = frozenset({"contents", "systemInstruction", "tools", "toolConfig", "generationConfig", "safetySettings",
                     "cachedContent", "labels"})


def _error(status: int, message: str) -> web.Response:
    return error_response("gemini", status, message)


def _check_key(call: MockCall) -> web.Response | None:
    if call.header("x-goog-api-key") or call.request.query.get("key"):
        return None
    return _error(403, "Method doesn't allow unregistered callers (callers without established identity). "
                       "Please use API Key or other form of API consumer identity to call this API.")


async def model_method(call: MockCall) -> web.StreamResponse:
    """`POST /v1beta/models/{model}:{method}`."""
    problem = _check_key(call)
    if problem is not None:
        return problem
    model, _, method = call.request.match_info["call"].rpartition(":")
    handler = _METHODS.get(method)
    if handler is None or not model:
        return _error(404, f"method {method!r} is not found for models/{model}")
    if call.body_invalid or not isinstance(call.body, dict):
        return _error(400, "Invalid JSON payload received. Expected an object.")
    return await handler(call, model, call.body)


def _body_problem(body: dict[str, Any]) -> web.Response | None:
    unknown = sorted(set(body) - _FIELDS)
    if unknown:
        return _error(400, f'Invalid JSON payload received. Unknown name "{unknown[0]}": Cannot find field.')
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        return _error(400, "* GenerateContentRequest.contents: contents is not specified")
    for i, turn in enumerate(contents):
        if not isinstance(turn, dict) or not isinstance(turn.get("parts"), list) or not turn["parts"]:
            return _error(400, f"* GenerateContentRequest.contents[{i}].parts: contents.parts must not be empty.")
        if turn.get("role", "user") not in ("user", "model"):
            return _error(400, f"Please use a valid role: user, model. (contents[{i}].role)")
    return None


def _prompt_tokens(body: dict[str, Any]) -> int:
    turns = [*body["contents"], *([body["systemInstruction"]] if isinstance(body.get("systemInstruction"), dict) else [])]
    return sum(sum(content.text_tokens(part["text"]) for part in turn.get("parts") or ()
                   if isinstance(part, dict) and isinstance(part.get("text"), str)) + content.MESSAGE_OVERHEAD_TOKENS
               for turn in turns)


@dataclass(slots=True, frozen=True)
class _Answer:
    number: int
    model: str
    count: int
    candidates: int
    capped: bool
    prompt: int
    cached: int
    thoughts: int
    call: dict[str, Any] | None

    def usage(self, produced: int) -> dict[str, Any]:
        usage: dict[str, Any] = {"promptTokenCount": self.prompt, "candidatesTokenCount": produced * self.candidates,
                                 "totalTokenCount": self.prompt + produced * self.candidates + self.thoughts}
        if self.cached:
            usage["cachedContentTokenCount"] = self.cached
        if self.thoughts:
            usage["thoughtsTokenCount"] = self.thoughts
        return usage

    def chunk(self, parts: list[dict[str, Any]], finish: bool, produced: int) -> dict[str, Any]:
        reason = "STOP" if self.call or not self.capped else "MAX_TOKENS"
        candidates = [{"content": {"parts": parts, "role": "model"}, "index": i,
                       **({"finishReason": reason} if finish else {})} for i in range(self.candidates)]
        return {"candidates": candidates, "usageMetadata": self.usage(produced), "modelVersion": self.model,
                "responseId": f"mock-{self.number}"}


def _answer(call: MockCall, model: str, body: dict[str, Any]) -> _Answer:
    settings = call.state.settings
    config = body.get("generationConfig") if isinstance(body.get("generationConfig"), dict) else {}
    cap = None if settings.ignore_max_tokens else config.get("maxOutputTokens")
    count, capped = content.answer_tokens(cap, settings.completion_tokens)
    prompt = _prompt_tokens(body)
    thinking = config.get("thinkingConfig") if isinstance(config.get("thinkingConfig"), dict) else {}
    budget = thinking.get("thinkingBudget")
    thoughts = min(budget, THOUGHT_TOKENS) if isinstance(budget, int) and budget > 0 else 0
    candidates = config.get("candidateCount") if isinstance(config.get("candidateCount"), int) else 1
    return _Answer(call.state.next_id(), model, count, max(candidates, 1), capped, prompt,
                   content.cached_part(prompt, settings.cached_tokens), thoughts, _function_call(body))


def _function_call(body: dict[str, Any]) -> dict[str, Any] | None:
    declarations = [d for tool in body.get("tools") or () if isinstance(tool, dict)
                    for d in tool.get("functionDeclarations") or () if isinstance(d, dict)]
    if not declarations:
        return None
    calling = ((body.get("toolConfig") or {}).get("functionCallingConfig") or {})
    mode = calling.get("mode", "AUTO")
    allowed = calling.get("allowedFunctionNames") or [d.get("name") for d in declarations]
    last = body["contents"][-1]
    texts = [p["text"] for p in last.get("parts") or () if isinstance(p, dict) and isinstance(p.get("text"), str)]
    asks = last.get("role", "user") == "user" and content.asks_for_weather([{"role": "user", "content": " ".join(texts)}])
    if mode == "NONE" or (mode != "ANY" and not asks):
        return None
    for declaration in declarations:
        if declaration.get("name") in allowed:
            schema = declaration.get("parametersJsonSchema") or declaration.get("parameters")
            return {"name": declaration["name"], "args": content.tool_arguments(_lower_types(schema))}
    return None


def _lower_types(schema: Any) -> Any:
    """Gemini's OpenAPI schemas spell types in capitals (`STRING`); JSON Schema in lower case."""
    if isinstance(schema, dict):
        return {k: (v.lower() if k == "type" and isinstance(v, str) else _lower_types(v)) for k, v in schema.items()}
    return schema


async def _generate(call: MockCall, model: str, body: dict[str, Any]) -> web.StreamResponse:
    problem = _body_problem(body)
    if problem is not None:
        return problem
    answer = _answer(call, model, body)
    if answer.call:
        return await send_json(call, answer.chunk([{"functionCall": answer.call}], True, answer.count))
    return await send_json(call, answer.chunk([{"text": content.answer_text(answer.count)}], True, answer.count))


async def _stream(call: MockCall, model: str, body: dict[str, Any]) -> web.StreamResponse:
    if call.request.query.get("alt") != "sse":
        return _error(400, "the mock streams Server-Sent Events only: add ?alt=sse")
    problem = _body_problem(body)
    if problem is not None:
        return problem
    return await send_sse(call, _chunks(_answer(call, model, body)))


def _chunks(answer: _Answer) -> Iterator[bytes]:
    if answer.call:
        yield sse_data(answer.chunk([{"functionCall": answer.call}], True, answer.count))
        return
    words = content.answer_words(answer.count) or [""]
    for i, word in enumerate(words):
        yield sse_data(answer.chunk([{"text": word}], i == len(words) - 1, i + 1 if answer.count else 0))


async def _embed(call: MockCall, model: str, body: dict[str, Any]) -> web.StreamResponse:
    parts = (body.get("content") or {}).get("parts") if isinstance(body.get("content"), dict) else None
    if not isinstance(parts, list) or not parts:
        return _error(400, "* EmbedContentRequest.content: content is not specified")
    unknown = sorted(set(body) - {"content", "taskType", "title", "outputDimensionality", "model"})
    if unknown:
        return _error(400, f'Invalid JSON payload received. Unknown name "{unknown[0]}": Cannot find field.')
    text = " ".join(p.get("text", "") for p in parts if isinstance(p, dict))
    dims = body.get("outputDimensionality") or call.state.settings.embedding_dims
    return await send_json(call, {"embedding": {"values": content.embedding_vector(text, dims)}})


async def _count(call: MockCall, model: str, body: dict[str, Any]) -> web.StreamResponse:
    request = body.get("generateContentRequest") if isinstance(body.get("generateContentRequest"), dict) else body
    problem = _body_problem({k: v for k, v in request.items() if k != "model"})
    if problem is not None:
        return problem
    return await send_json(call, {"totalTokens": _prompt_tokens(request)})


_METHODS = {"generateContent": _generate, "streamGenerateContent": _stream, "embedContent": _embed,
            "countTokens": _count}


def method_handler(method: str) -> Callable[[MockCall, str, dict[str, Any]], Awaitable[web.StreamResponse]] | None:
    """The handler of a model method (`generateContent` ...), for Vertex AI's Gemini routes."""
    return _METHODS.get(method)


async def list_models(call: MockCall) -> web.StreamResponse:
    """`GET /v1beta/models`."""
    problem = _check_key(call)
    if problem is not None:
        return problem
    return await send_json(call, {"models": [{"name": f"models/{m}", "displayName": m,
                                              "supportedGenerationMethods": ["generateContent", "countTokens"]}
                                             for m in MODELS]})


def add_gemini_routes(router: web.UrlDispatcher) -> None:
    router.add_post("/v1beta/models/{call}", endpoint(model_method, "gemini"))
    router.add_get("/v1beta/models", endpoint(list_models, "gemini"))
