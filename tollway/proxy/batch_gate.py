"""What every files and batches route shares: the parts it is built from, the caller's
identity, the admission of an operation on a batch or file (identity and request limits,
like the stored-response routes: nothing reserved or charged), calls to the provider, and
the answer of a refusal in the client API's shape.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass

from tollway.asgi import JSON_HEADERS, ClientGone, Scope, Send, respond
from tollway.config.schema import EstimateConfig
from tollway.denials import error_body
from tollway.errors import GatewayError, bad_request, governance_unavailable, upstream_timeout, upstream_unreachable
from tollway.governance.counters.base import CounterStore, CounterUnavailable
from tollway.governance.decisions import Denial, denial_headers
from tollway.governance.end_users import templates_of
from tollway.governance.enforcer import Admission, Enforcer
from tollway.governance.engine import RequestFacts, access_denial, hash_key, identify_key
from tollway.governance.model import PolicySnapshot, VirtualKeyPolicy
from tollway.governance.names import model_key
from tollway.pricing import PriceCatalog
from tollway.providers.adapters.base import OPENAI_BATCHES
from tollway.providers.client import NoUsableKey, ProviderClient, ProviderKey
from tollway.providers.http import UpstreamHTTPError, UpstreamResponse
from tollway.proxy.auth import presented_key
from tollway.proxy.batch_lines import BatchTarget
from tollway.proxy.batch_prices import BatchPrices
from tollway.proxy.outcome import Outcome, OutcomeSink
from tollway.proxy.policy_source import PolicySource
from tollway.proxy.targets import TargetResolver
from tollway.store.database import Database


@dataclass(slots=True)
class BatchServices:
    """The parts the batch routes and their follow-up are built from."""

    providers: Mapping[str, ProviderClient]
    resolver: TargetResolver
    enforcer: Enforcer
    snapshot: PolicySource
    counters: CounterStore
    pricing: PriceCatalog
    batch_prices: BatchPrices
    sink: OutcomeSink
    estimates: EstimateConfig
    db: Database
    clock_ms: Callable[[], int]
    max_body_bytes: int
    max_file_bytes: int
    require_price: bool = False


@dataclass(slots=True)
class Caller:
    """Who is asking: the presented key's hash, the policy that knows it, and the key."""

    key_hash: str | None
    snapshot: PolicySnapshot
    key: VirtualKeyPolicy | None

    @property
    def key_id(self) -> str | None:
        return self.key.id if self.key is not None else None


class Refused(Exception):
    """A governance denial, answered with its status and the usual denial body."""

    def __init__(self, denial: Denial) -> None:
        super().__init__(denial.message)
        self.denial = denial


class BatchGate:
    """Identity, admission, provider calls and answers for the batch routes."""

    def __init__(self, services: BatchServices) -> None:
        self.services = services
        self._ids = itertools.count(1)
        self._id_prefix = "b" + os.urandom(4).hex()

    def outcome(self, route: str) -> Outcome:
        return Outcome(f"{self._id_prefix}-{next(self._ids)}", route, self.services.clock_ms())

    @asynccontextmanager
    async def serving(self, outcome: Outcome, send: Send, anthropic: bool) -> AsyncIterator[None]:
        """Serve one request inside: a `GatewayError` or a `Refused` is answered (in the
        client API's shape) and recorded; the outcome always reaches the request log."""
        started = time.perf_counter()
        try:
            yield
        except Refused as refused:
            denial = refused.denial
            outcome.status, outcome.decision = denial.decision.status, denial.decision.value
            outcome.denied_scope, outcome.error = denial.scope, denial.message
            await respond(send, denial.decision.status, error_body(denial, anthropic=anthropic),
                          JSON_HEADERS + denial_headers(denial))
        except GatewayError as err:
            outcome.status, outcome.error = err.status, err.message
            await respond(send, err.status, err.anthropic_body() if anthropic else err.openai_body(),
                          JSON_HEADERS + err.headers)
        except ClientGone:
            outcome.status, outcome.error = 499, "client closed the connection"
        finally:
            outcome.latency_ms = (time.perf_counter() - started) * 1000
            self.services.sink.record(outcome)

    async def identify(self, scope: Scope) -> Caller:
        """The caller, or `Refused` for a missing (where keys are enforced), unknown, expired
        or blocked key: before anything about a batch or file is looked up."""
        value = presented_key(scope)
        key_hash = hash_key(value) if value else None
        snapshot = await self.services.snapshot.for_key(key_hash)
        key = identify_key(snapshot, key_hash, self.services.clock_ms())
        if isinstance(key, Denial):
            raise Refused(key)
        return Caller(key_hash, snapshot, key)

    def limits_end_users(self, caller: Caller) -> bool:
        """Whether end-user limits apply to the caller's requests (a batch must then name one
        end user at most, `tollway.proxy.end_user.batch_end_user`)."""
        return caller.key is not None and bool(templates_of(caller.snapshot, caller.key))

    def resolve(self, caller: Caller, model: str, batch_api: str) -> BatchTarget:
        """Where a batch of ``model`` goes for ``caller``; a 400 naming a provider without
        this batch API."""
        target = self.services.resolver.resolve(model_key(model), caller.key)[0]
        provider = self.services.providers[target.provider]
        if provider.adapter.batch_api != batch_api:
            kind = "OpenAI files and batches" if batch_api == OPENAI_BATCHES else "Anthropic message batches"
            raise bad_request(f"provider {target.provider!r} (type {provider.type}) does not take {kind} through this "
                              "gateway; batches go to openai, azure (OpenAI's form) and anthropic providers", "model")
        return BatchTarget(target, provider, provider.upstream_model(target.model))

    async def admit(self, caller: Caller, facts: RequestFacts, outcome: Outcome) -> Admission:
        """Admit one operation (identity and request limits); raises `Refused`. The caller
        settles (nothing) or releases the admission's reservation."""
        try:
            admission = await self.services.enforcer.admit(caller.snapshot, facts)
            if admission.queue is not None:
                admission = await self.services.enforcer.wait_for_slot(self.services.snapshot, facts, admission)
        except CounterUnavailable as exc:
            raise governance_unavailable(str(exc)) from None
        outcome.provider, outcome.model = facts.provider, facts.model
        outcome.key_id, outcome.team_id, outcome.customer_id = admission.key_id, admission.team_id, admission.customer_id
        outcome.would_deny = admission.would_deny
        if admission.denial is not None:
            raise Refused(admission.denial)
        return admission

    @asynccontextmanager
    async def operation(self, caller: Caller, provider: str, model: str, outcome: Outcome) -> AsyncIterator[Admission]:
        """An admitted operation on a batch or file: a request slot, nothing charged."""
        enforcer = self.services.enforcer
        admission = await self.admit(caller, RequestFacts(provider, model_key(model), caller.key_hash, 0, 0), outcome)
        try:
            yield admission
            await enforcer.settle(admission.reservation, 0, 0)
        finally:
            await enforcer.release(admission.reservation)

    def listing_target(self, caller: Caller, batch_api: str) -> tuple[str, str]:
        """A provider and model to admit a list of a key's batches by, when it has none yet:
        one of the batch API's providers with a model the key may use there."""
        candidates = []
        for name, provider in self.services.providers.items():
            if provider.adapter.batch_api != batch_api:
                continue
            key = caller.key
            named = set(key.allowed_models) if key is not None else set()
            config = key.provider_configs.get(name) if key is not None else None
            named |= set(config.allowed_models) if config is not None else set()
            models = sorted(model.removeprefix(f"{name}/") for model in named) or ["batches"]
            candidates += [(name, model) for model in models]
        if not candidates:
            raise bad_request(f"no provider of this gateway takes {batch_api.replace('_', ' ')}")
        if caller.key is None:
            return candidates[0]
        key = caller.key
        return next((c for c in candidates if access_denial(key, c[0], model_key(c[1])) is None), candidates[0])

    def provider_key(self, provider: ProviderClient, model: str, key_id: str | None = None,
                     allowed: frozenset[str] = frozenset()) -> ProviderKey:
        """The provider key to use: the one named (the account that holds a batch), else a choice."""
        if key_id is not None:
            for key in provider.keys:
                if key.id == key_id:
                    return key
            raise GatewayError(503, "api_error", f"the provider key that holds this batch ({key_id!r}) is no longer "
                               f"configured on provider {provider.name!r}", code="provider_key_gone")
        try:
            return provider.pick_key(model, allowed)
        except NoUsableKey as exc:
            raise bad_request(str(exc)) from None


async def call(provider: ProviderClient, method: str, url: str, key: ProviderKey,
               body: bytes | None = None) -> tuple[int, bytes, str]:
    """One request to the provider: status, body and content type; failures as the gateway's 502/504."""
    return await _exchange(provider, provider.send(method, url, key, body))


async def stream_to(provider: ProviderClient, url: str, key: ProviderKey, consume: Callable[[bytes], None]) -> bool:
    """GET ``url`` and hand its body to ``consume`` as it arrives (a batch's results); False
    when the provider answers an error. Failures as the gateway's 502/504."""
    response: UpstreamResponse | None = None
    try:
        response = await provider.send("GET", url, key, None)
        if response.status >= 300:
            await response.read()
            response.release()
            return False
        async for chunk in response.iter_chunks():
            consume(chunk)
    except TimeoutError:
        if response is not None:
            response.close()
        raise upstream_timeout(provider.name) from None
    except UpstreamHTTPError as exc:
        if response is not None:
            response.close()
        raise upstream_unreachable(provider.name, str(exc) or type(exc).__name__) from None
    response.release()
    return True


async def upload(provider: ProviderClient, url: str, headers: dict[str, str], body: AsyncIterable[bytes],
                 length: int) -> tuple[int, bytes, str]:
    """A streamed POST of ``length`` bytes (a file upload), answered like `call`."""
    return await _exchange(provider, provider.post_to(url, headers, body, length, False))


async def _exchange(provider: ProviderClient, sending: Awaitable[UpstreamResponse]) -> tuple[int, bytes, str]:
    response: UpstreamResponse | None = None
    try:
        response = await sending
        data = await response.read()
    except TimeoutError:
        if response is not None:
            response.close()
        raise upstream_timeout(provider.name) from None
    except UpstreamHTTPError as exc:
        if response is not None:
            response.close()
        raise upstream_unreachable(provider.name, str(exc) or type(exc).__name__) from None
    response.release()
    return response.status, data, response.headers.get("content-type") or "application/json"
