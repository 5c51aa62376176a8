"""The request's path: parse → key → target → governance → upstream → relay → settle."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from tollway.asgi import JSON_HEADERS, SSE_HEADERS, ClientGone, Headers, Receive, Scope, Send, read_body, respond
from tollway.config.schema import EstimateConfig
from tollway.denials import denial_body
from tollway.errors import (
    GatewayError,
    bad_request,
    governance_unavailable,
    shutting_down,
    upstream_invalid,
)
from tollway.governance.counters.base import CounterUnavailable
from tollway.governance.decisions import Denial, denial_headers
from tollway.governance.enforcer import Admission, Enforcer
from tollway.governance.engine import RequestFacts, hash_key
from tollway.pricing import PriceCatalog, scaled_cost
from tollway.providers.adapters.bedrock_errors import aws_error_body
from tollway.providers.adapters.gemini_response import google_error_body
from tollway.providers.anthropic_translate import TranslationError
from tollway.providers.client import Api, NoUsableKey, ProviderClient
from tollway.proxy.auth import presented_google_key, presented_key
from tollway.proxy.bedrock_metering import EVENT_STREAM, EventStreamMeter
from tollway.proxy.client_watch import ClientWatch
from tollway.proxy.end_user import end_user_of, header_end_user
from tollway.proxy.estimate import Demand, demand_of, request_facts
from tollway.proxy.exchange_choice import exchange_for
from tollway.proxy.metering import StreamMeter, cutoff_events
from tollway.proxy.outcome import Outcome, OutcomeSink
from tollway.proxy.passthrough import Exchange, LocalExchange
from tollway.proxy.policy_source import PolicySource
from tollway.proxy.relay import Cutoff, StreamResult, relay_stream
from tollway.proxy.request import ClientRequest, parse_request
from tollway.proxy.request_tags import request_tags
from tollway.proxy.reservation import covered_output, note_ignored_cap, strict_cap
from tollway.proxy.targets import Target, TargetResolver
from tollway.proxy.upstream import RETRIABLE, call_upstream, read_whole
from tollway.proxy.worst_case import with_cap
from tollway.usage import ZERO_USAGE, Usage

# What translating a body of an unexpected shape raises, beyond TranslationError.
_MALFORMED = (AttributeError, TypeError, ValueError, KeyError, IndexError)
_CUT_AT_SHUTDOWN = 499  # the outcome status of a stream the server cut while shutting down
# Upstream APIs whose streams are not SSE, and the meter that reads their framing.
_METERS: dict[Api, type[StreamMeter]] = {Api.CONVERSE: EventStreamMeter}
# Client APIs whose streams are not SSE: their content type.
_STREAM_HEADERS: dict[Api, Headers] = {Api.CONVERSE: [(b"content-type", EVENT_STREAM)]}


@dataclass(slots=True)
class _Failure:
    """The last upstream failure, answered when no fallback is left."""

    status: int
    body: bytes
    message: str


class Proxy:
    """Serves the OpenAI- and Anthropic-compatible routes."""

    def __init__(
        self,
        *,
        providers: Mapping[str, ProviderClient],
        resolver: TargetResolver,
        enforcer: Enforcer,
        snapshot: PolicySource,
        pricing: PriceCatalog,
        sink: OutcomeSink,
        estimates: EstimateConfig,
        max_body_bytes: int,
        require_price: bool = False,
    ) -> None:
        self._providers = providers
        self._resolver = resolver
        self._enforcer = enforcer
        self._snapshot = snapshot
        self._pricing = pricing
        self._sink = sink
        self._estimates = estimates
        self._require_price = require_price
        self._max_body = max_body_bytes
        self._ids = itertools.count(1)
        self._id_prefix = os.urandom(4).hex()

    async def handle(self, api: Api, scope: Scope, receive: Receive, send: Send,
                     route: Mapping[str, Any] | None = None) -> Outcome:
        """Serve one request; the outcome (also handed to the sink) says what became of it.
        ``route``: body fields the route's path gives (Google's model and stream)."""
        started = time.perf_counter()
        outcome = Outcome(f"{self._id_prefix}-{next(self._ids)}", api.value, self._enforcer.clock_ms())
        try:
            raw = await read_body(scope, receive, self._max_body)
            request = parse_request(api, raw, route)
            request.tags = request_tags(scope, request.body)
            outcome.stream = request.stream
            key = presented_google_key(scope) if api.google_shaped else presented_key(scope)
            await self._serve(request, key, header_end_user(scope), receive, send, outcome)
        except GatewayError as err:
            outcome.status, outcome.error = err.status, err.message
            await _respond_error(send, err, api)
        except ClientGone:
            outcome.status, outcome.error = 499, "client closed the connection"
        except asyncio.CancelledError:
            # The server cut the request at the end of its shutdown grace period. A stream was
            # ended with an error event already; anything else gets a 503. Ending here, rather
            # than re-raising, lets the server close the response instead of logging a traceback.
            if outcome.status != _CUT_AT_SHUTDOWN:
                outcome.status, outcome.error = 503, "cut at server shutdown"
                with contextlib.suppress(Exception):  # a response may have begun already
                    await _respond_error(send, shutting_down(), api)
        finally:
            outcome.latency_ms = (time.perf_counter() - started) * 1000
            self._sink.record(outcome)
        return outcome

    async def _serve(self, request: ClientRequest, key_value: str | None, user_header: bytes | None, receive: Receive,
                     send: Send, outcome: Outcome) -> None:
        key_hash = hash_key(key_value) if key_value else None  # once: the enforcer looks the key up by it too
        snapshot = await self._snapshot.for_key(key_hash)
        key = snapshot.keys_by_hash.get(key_hash) if key_hash else None
        outcome.end_user = end_user = end_user_of(request.api, request.body, user_header, key)
        targets = self._resolver.resolve(request.model, key)
        failure: _Failure | None = None
        for target in targets:
            provider = self._providers[target.provider]
            exchange = exchange_for(request.api, provider, target.model)
            prepared = self._prepare(request, target, provider, exchange)
            if isinstance(prepared, _Failure):
                failure = prepared
                break
            body, demand = prepared
            facts = request_facts(target.provider, target.model, key_hash, demand, request.tags)
            facts.end_user = end_user
            try:
                admission = await self._enforcer.admit(snapshot, facts)
                if admission.queue is not None:  # no in-flight slot free, and its limit lets the request wait
                    queued = await self._wait_for_slot(facts, admission, receive, outcome)
                    if queued is None:
                        return
                    admission = queued
            except CounterUnavailable as exc:  # fail closed: a fail-open store never raises this
                raise governance_unavailable(str(exc)) from None
            outcome.provider, outcome.model = target.provider, target.model
            outcome.key_id, outcome.team_id, outcome.customer_id = admission.key_id, admission.team_id, admission.customer_id
            outcome.would_deny, outcome.tags = admission.would_deny, admission.tags
            if admission.denial is not None:
                await self._deny(request, admission.denial, send, outcome)
                return
            try:
                upstream = _Upstream(target, provider, exchange, body, demand)
                failure = await self._forward(request, upstream, admission, receive, send, outcome)
            finally:
                # Releasing a settled reservation does nothing; this frees what a failure,
                # a cancellation or an unexpected error left reserved.
                await self._enforcer.release(admission.reservation)
            if failure is None:
                return
            if failure.status not in RETRIABLE and failure.status not in (502, 504):
                break
        assert failure is not None
        outcome.status, outcome.error = failure.status, failure.message
        await respond(send, failure.status, failure.body)

    async def _wait_for_slot(self, facts: RequestFacts, admission: Admission, receive: Receive,
                             outcome: Outcome) -> Admission | None:
        """The admission after waiting in the queue for an in-flight slot; None when the
        client hung up meanwhile (it then left the queue and holds nothing)."""
        with ClientWatch(receive, grace_s=0) as watch:
            try:
                admission = await self._enforcer.wait_for_slot(self._snapshot, facts, admission)
            except asyncio.CancelledError:
                if not watch.absorb():
                    raise
                outcome.status, outcome.error = 499, "client disconnected while waiting for a concurrency slot"
                return None
        if watch.client_left:  # it hung up just as a slot was found: give the slot back
            await self._enforcer.release(admission.reservation)
            outcome.status, outcome.error = 499, "client disconnected while waiting for a concurrency slot"
            return None
        return admission

    def _prepare(self, request: ClientRequest, target: Target, provider: ProviderClient,
                 exchange: Exchange) -> tuple[dict, Demand] | _Failure:
        """The upstream body and what it may use (its reservation's demand), or why it cannot be sent."""
        try:
            body = exchange.upstream_body(request, target.model)
        except TranslationError as exc:
            message = f"{exc} (provider {provider.name!r})"
            return _Failure(400, _error_body(bad_request(message, exc.field), request.api), message)
        except _MALFORMED as exc:  # a field of a shape the translation did not expect
            message = (f"the request cannot be sent to provider {provider.name!r} ({provider.type}): a field has "
                       f"an unexpected type or value ({type(exc).__name__}: {exc})")
            return _Failure(400, _error_body(bad_request(message), request.api), message)
        # A 400 on cap fields that conflict; model_unpriced under require_price.
        return body, demand_of(exchange.upstream_api, body, provider, target.model, self._pricing, self._estimates,
                               self._require_price)

    async def _forward(self, request: ClientRequest, upstream: _Upstream, admission: Admission, receive: Receive,
                       send: Send, outcome: Outcome) -> _Failure | None:
        """Send to one target; None when a response was relayed, else the failure."""
        target, provider, exchange, demand = upstream.target, upstream.provider, upstream.exchange, upstream.demand
        if isinstance(exchange, LocalExchange):  # answered by the gateway itself; nothing to charge
            local = admission.headers + [(b"x-request-id", outcome.request_id.encode())] + exchange.headers
            await respond(send, 200, exchange.answer(request), JSON_HEADERS + local)
            await self._charge(ZERO_USAGE, provider, target, admission, outcome)
            return None
        estimate = (demand.prompt_estimate, demand(demand.cap)[0] - demand.prompt_estimate)
        try:
            upstream_key = provider.pick_key(target.model, admission.allowed_provider_keys)
        except NoUsableKey as exc:
            return _Failure(400, _error_body(bad_request(str(exc)), request.api), str(exc))
        capped = strict_cap(admission, demand)
        if capped is not None:
            with_cap(demand.worst, exchange.upstream_api, upstream.body, capped)
        body = orjson.dumps(upstream.body)
        with ClientWatch(receive) as watch:
            try:
                response = await call_upstream(provider, exchange.upstream_api, target.model, body, upstream_key, request.stream)
                # A body cut short or late fails the call like a refused connection would (and may fall back).
                data = b"" if request.stream and response.status < 400 else await read_whole(provider, response)
            except GatewayError as err:
                return _Failure(err.status, _error_body(err, request.api), err.message)
            except asyncio.CancelledError:
                if not watch.absorb():
                    raise
                # Nothing reached the client, but the provider has read the prompt: charged
                # like a stream the client cut before its first token.
                outcome.status, outcome.error = 499, "client disconnected while waiting for the upstream"
                await self._charge(Usage(estimate[0], 0), provider, target, admission, outcome)
                return None
        if response.status >= 400:
            return _Failure(response.status, exchange.error(response.status, data), f"upstream answered {response.status}")
        headers = admission.headers + [(b"x-request-id", outcome.request_id.encode())]
        if admission.clamped_cap is not None:
            headers.append((b"x-tollway-clamped-max-tokens", b"%d" % admission.clamped_cap))
        if request.stream:
            converter = exchange.stream(request, target.model)
            cutoff = self._cutoff(request, demand, admission, exchange.upstream_api)
            try:
                result = await relay_stream(response, converter, headers, receive, send, cutoff,
                                            _STREAM_HEADERS.get(request.api, SSE_HEADERS))
            except asyncio.CancelledError:
                # Cut by the server (shutdown past its grace period): charged for what was
                # produced, like a stream the client cut, and ended with an error event.
                result = StreamResult(_CUT_AT_SHUTDOWN, converter.usage, converter.produced, "cut at server shutdown")
                outcome.status, outcome.error = result.status, result.error
                await self._charge(result.usage_or(estimate), provider, target, admission, outcome)
                with contextlib.suppress(Exception):  # the client may be gone too
                    await send({"type": "http.response.body", "more_body": False,
                                "body": converter.error_event("the gateway is shutting down; the stream was cut")})
                raise
            usage = result.usage_or(estimate)
            outcome.status, outcome.error = result.status, result.error
        else:
            try:
                out, reported = exchange.response(data, target.model)
            except (TranslationError, *_MALFORMED) as exc:  # the upstream answered something we cannot express
                err = upstream_invalid(provider.name, str(exc))
                return _Failure(502, _error_body(err, request.api), err.message)
            usage = reported or Usage(*estimate)
            note_ignored_cap(usage, demand, capped, outcome)
            await respond(send, 200, out, JSON_HEADERS + headers)
        await self._charge(usage, provider, target, admission, outcome)
        return None

    def _cutoff(self, request: ClientRequest, demand: Demand, admission: Admission, upstream_api: Api) -> Cutoff | None:
        """The meter that holds a stream within its reservation (read in the upstream's
        framing); None when no token limit or budget applies (nothing to hold it to)."""
        reservation = admission.reservation
        if reservation is None:
            return None
        covers = covered_output(reservation.plan, demand, admission.readings)
        if covers is None:
            return None
        rates = demand.rates

        async def extend(tokens: int) -> Denial | None:
            return await self._enforcer.extend(reservation, tokens, scaled_cost(tokens * rates.output))

        def end(meter: StreamMeter) -> bytes:
            reason = (f"the output was cut off at {meter.counted} tokens (counted as bytes of text): "
                      + (meter.denial.message if meter.denial is not None else "the request's reservation is used up"))
            return cutoff_events(request.api, request.model, demand.worst.generations, meter.open_blocks,
                                 meter.counted, meter.denial, reason)

        reserved, covered = covers
        return Cutoff(_METERS.get(upstream_api, StreamMeter)(covered, extend, reserved), end)

    async def _charge(self, usage: Usage, provider: ProviderClient, target: Target, admission: Admission,
                      outcome: Outcome) -> None:
        cost = self._pricing.cost_nano(provider.type, provider.name, target.model, usage)
        await self._enforcer.settle(admission.reservation, usage.total_tokens, cost)
        outcome.usage, outcome.cost_nano = usage, cost

    async def _deny(self, request: ClientRequest, denial: Denial, send: Send, outcome: Outcome) -> None:
        outcome.status, outcome.decision = denial.decision.status, denial.decision.value
        outcome.denied_scope, outcome.error = denial.scope, denial.message
        await respond(send, denial.decision.status, denial_body(denial, request.api),
                      JSON_HEADERS + denial_headers(denial))


@dataclass(slots=True)
class _Upstream:
    """One target of a request with the body prepared for it."""

    target: Target
    provider: ProviderClient
    exchange: Exchange
    body: dict
    demand: Demand


def _error_body(error: GatewayError, api: Api) -> bytes:
    if api.google_shaped:
        return google_error_body(error.status, error.message, error.code)
    if api.aws_shaped:
        return aws_error_body(error.status, error.message, error.code)
    return error.anthropic_body() if api.anthropic_shaped else error.openai_body()


async def _respond_error(send: Send, error: GatewayError, api: Api) -> None:
    await respond(send, error.status, _error_body(error, api), JSON_HEADERS + error.headers)
