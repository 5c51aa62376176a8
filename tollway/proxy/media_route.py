"""The media routes: images (generations, edits), audio (transcriptions, translations,
speech) and moderations, governed like chat.

Each request is parsed only as far as governance needs (`tollway.proxy.media_request`),
reserved before the call at its worst case in its own unit (`tollway.proxy.media_cost`),
forwarded to an OpenAI-compatible or Azure provider (`tollway.providers.media` knows the
URLs and who serves what), and settled from the response. Uploads stream through; the
speech answer is relayed as it arrives. No fallbacks or retries: an upload cannot be sent
twice, and an image generated twice is paid twice.
"""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import AsyncIterable, Mapping

from tollway.asgi import JSON_HEADERS, Receive, Scope, Send, respond
from tollway.config.schema import EstimateConfig, MediaConfig
from tollway.denials import error_body
from tollway.errors import (
    bad_request,
    governance_unavailable,
    model_unpriced,
    upstream_timeout,
    upstream_unreachable,
)
from tollway.governance.counters.base import CounterUnavailable
from tollway.governance.decisions import denial_headers
from tollway.governance.enforcer import Admission, Enforcer
from tollway.governance.engine import RequestFacts, hash_key
from tollway.governance.names import model_key
from tollway.pricing import PriceCatalog
from tollway.providers.client import Api, NoUsableKey, ProviderClient
from tollway.providers.http import UpstreamHTTPError, UpstreamResponse
from tollway.providers.media import media_headers, media_refusal, media_url
from tollway.proxy.auth import presented_key
from tollway.proxy.end_user import end_user_of, header_end_user
from tollway.proxy.media_cost import MediaCharge
from tollway.proxy.media_request import MediaRequest, parse_media_request
from tollway.proxy.outcome import Outcome, OutcomeSink, answered
from tollway.proxy.passthrough import load_object, openai_error_from
from tollway.proxy.policy_source import PolicySource
from tollway.proxy.request_tags import request_tags
from tollway.proxy.targets import Target, TargetResolver
from tollway.proxy.upstream import read_whole

_TAIL_BYTES = 65536  # of a streamed transcription: where its usage event is


class MediaRoute:
    """Serves the media APIs (`tollway.providers.media.MEDIA_APIS`)."""

    def __init__(self, *, providers: Mapping[str, ProviderClient], resolver: TargetResolver, enforcer: Enforcer,
                 snapshot: PolicySource, pricing: PriceCatalog, sink: OutcomeSink,
                 estimates: EstimateConfig, media: MediaConfig, max_body_bytes: int,
                 require_price: bool = False) -> None:
        self._providers = providers
        self._resolver = resolver
        self._enforcer = enforcer
        self._snapshot = snapshot
        self._pricing = pricing
        self._sink = sink
        self._estimates = estimates
        self._media = media
        self._max_body = max_body_bytes
        self._require_price = require_price
        self._ids = itertools.count(1)
        self._id_prefix = "m" + os.urandom(4).hex()

    async def handle(self, api: Api, scope: Scope, receive: Receive, send: Send) -> Outcome:
        outcome = Outcome(f"{self._id_prefix}-{next(self._ids)}", api.value, self._enforcer.clock_ms())
        async with answered(outcome, self._sink, send):
            request = await parse_media_request(api, scope, receive, self._max_body, self._media.max_upload_bytes)
            outcome.stream = request.stream
            request.tags = request_tags(scope)  # the header only: the media APIs have no metadata field
            await self._serve(request, presented_key(scope), header_end_user(scope), send, outcome)
        return outcome

    async def _serve(self, request: MediaRequest, key_value: str | None, user_header: bytes | None, send: Send,
                     outcome: Outcome) -> None:
        key_hash = hash_key(key_value) if key_value else None
        snapshot = await self._snapshot.for_key(key_hash)
        key = snapshot.keys_by_hash.get(key_hash) if key_hash else None
        # Images name their end user in `user` (a JSON or form field); audio and moderations only in the header.
        outcome.end_user = end_user = end_user_of(request.api, {"user": request.field("user")}, user_header, key)
        target = self._resolver.resolve(request.model, key)[0]
        provider = self._providers[target.provider]
        refusal = media_refusal(provider, request.api)
        if refusal is not None:
            raise bad_request(refusal, "model")
        price = self._pricing.price_for(provider.type, provider.name, target.model)
        if price is None and self._require_price:
            raise model_unpriced(provider.name, target.model)
        demand = request.demand(price, self._estimates, self._media)
        facts = RequestFacts(target.provider, model_key(target.model), key_hash, demand.tokens, demand.cost_nano,
                             demand.worst_tokens, demand.worst_cost_nano, tags=request.tags, end_user=end_user)
        try:
            admission = await self._enforcer.admit(snapshot, facts)
            if admission.queue is not None:
                admission = await self._enforcer.wait_for_slot(self._snapshot, facts, admission)
        except CounterUnavailable as exc:
            raise governance_unavailable(str(exc)) from None
        outcome.provider, outcome.model = target.provider, target.model
        outcome.key_id, outcome.team_id, outcome.customer_id = admission.key_id, admission.team_id, admission.customer_id
        outcome.tags = admission.tags
        if admission.denial is not None:
            denial = admission.denial
            outcome.status, outcome.decision = denial.decision.status, denial.decision.value
            outcome.denied_scope, outcome.error = denial.scope, denial.message
            await respond(send, denial.decision.status, error_body(denial), JSON_HEADERS + denial_headers(denial))
            return
        try:
            charge = await self._forward(request, target, provider, admission, send, outcome)
            if charge is not None:
                await self._enforcer.settle(admission.reservation, charge.usage.total_tokens, charge.cost_nano)
                outcome.usage, outcome.cost_nano = charge.usage, charge.cost_nano
        finally:
            await self._enforcer.release(admission.reservation)  # after a failure: nothing charged

    async def _forward(self, request: MediaRequest, target: Target, provider: ProviderClient, admission: Admission,
                       send: Send, outcome: Outcome) -> MediaCharge | None:
        """Call the provider and answer the client; the charge, or None when nothing is owed."""
        try:
            key = provider.pick_key(target.model, admission.allowed_provider_keys)
        except NoUsableKey as exc:
            raise bad_request(str(exc)) from None
        body, length = request.upstream_body(provider.upstream_model(target.model), self._media.max_upload_bytes)
        url = media_url(provider, request.api, target.model)
        response = await _call(provider, url, media_headers(provider, key, request.content_type), body, length,
                               request.relayed)
        headers = admission.headers + [(b"x-request-id", outcome.request_id.encode())]
        if response.status >= 400:
            data = await read_whole(provider, response)
            outcome.status, outcome.error = response.status, f"upstream answered {response.status}"
            await respond(send, response.status, openai_error_from(response.status, data), JSON_HEADERS + headers)
            return None
        content_type = (response.headers.get("content-type") or "application/json").encode("latin-1")
        headers.append((b"content-type", content_type))
        if request.relayed:
            tail = await _relay(response, headers, send, outcome)
            return _charge(request, tail or b"", outcome)
        data = await read_whole(provider, response)
        await respond(send, 200, data, headers)
        return _charge(request, data, outcome)


def _charge(request: MediaRequest, data: bytes, outcome: Outcome) -> MediaCharge:
    """What the answer costs; an answer of a shape the gateway cannot read is charged the
    estimate it reserved (never nothing: the provider did the work)."""
    try:
        return request.charge(load_object(data), data)
    except (TypeError, ValueError, AttributeError, KeyError) as exc:
        outcome.error = f"the answer's usage could not be read ({type(exc).__name__}): charged the estimate"
        return request.estimated_charge()


async def _call(provider: ProviderClient, url: str, headers: dict[str, str], body: bytes | AsyncIterable[bytes],
                length: int, stream: bool) -> UpstreamResponse:
    try:
        return await provider.post_to(url, headers, body, length, stream)
    except asyncio.TimeoutError:
        raise upstream_timeout(provider.name) from None
    except UpstreamHTTPError as exc:
        raise upstream_unreachable(provider.name, str(exc) or type(exc).__name__) from None


async def _relay(response: UpstreamResponse, headers: list[tuple[bytes, bytes]], send: Send,
                 outcome: Outcome) -> bytes | None:
    """Relay the answer as it arrives (speech audio, a transcription's events); the last
    bytes of it (where a stream's usage is), or None when the client left early (charged
    all the same: the provider produced it)."""
    tail = b""
    try:
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        async for chunk in response.iter_chunks():
            tail = (tail + chunk)[-_TAIL_BYTES:]
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    except (OSError, UpstreamHTTPError, asyncio.TimeoutError) as exc:
        response.close()
        outcome.status, outcome.error = 502, f"the answer was cut short: {exc or type(exc).__name__}"
        return tail
    response.release()
    return tail
