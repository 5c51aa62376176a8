"""`/api/governance/explain`: would a request be allowed now, and where does every limit
that applies to it stand? Answered by the enforcer itself over the policy in force, with
the request's demand computed as the proxy computes it (`tollway.proxy.estimate`), so it
agrees with what the gateway decides, strict limits and clamping included; nothing is
reserved or charged.

The request is described by the key (its value, or its id), the model (as clients send
it: ``provider/model``, an alias, or a bare name with ``provider``) and either token
counts or (POST) the body a client would send. Token counts describe a prompt of that
many tokens and one generation capped at ``completion_tokens`` (without it: no cap, so the
gateway's default completion estimate, and for strict limits the injected cap).
"""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query

from tollway.api.context import ManagedRuntime, RuntimeDep
from tollway.api.errors import bad_request, invalid, not_found
from tollway.api.responses import Explanation
from tollway.api.schemas import ExplainBodyRequest, ExplainRequest
from tollway.errors import GatewayError, model_unpriced
from tollway.governance.decisions import Decision, Denial, iso_utc
from tollway.governance.enforcer import Explanation as EnforcerExplanation
from tollway.governance.engine import LimitStatus, hash_key
from tollway.governance.inventory import amounts_view, in_units, treatment_view
from tollway.governance.model import NANO_PER_USD, Kind, PolicySnapshot, VirtualKeyPolicy
from tollway.providers.client import Api
from tollway.proxy.estimate import Demand, demand_of, demand_of_counts, request_facts
from tollway.proxy.exchange_choice import exchange_for
from tollway.proxy.request import parse_request
from tollway.proxy.targets import Target, TargetResolver

router = APIRouter(prefix="/api/governance", tags=["explain"])
# What translating a body of an unexpected shape raises (as the proxy's pipeline catches it).
_MALFORMED = (AttributeError, TypeError, ValueError, KeyError, IndexError)


@router.post("/explain", response_model=Explanation, summary="Explain what a request would get now")
async def explain_post(body: ExplainBodyRequest, runtime: RuntimeDep) -> dict[str, Any]:
    return await explain(runtime, body)


@router.get("/explain", response_model=Explanation, summary="Explain what a request would get now (query form)")
async def explain_get(query: Annotated[ExplainRequest, Query()], runtime: RuntimeDep) -> dict[str, Any]:
    """The same as POST with token counts; prefer POST with a key value, which would otherwise sit in URL logs."""
    return await explain(runtime, query)


async def explain(runtime: ManagedRuntime, ask: ExplainRequest) -> dict[str, Any]:
    if ask.virtual_key is not None and ask.virtual_key_id is not None:
        raise invalid("virtual_key_id", "give virtual_key or virtual_key_id, not both")
    body = ask.body if isinstance(ask, ExplainBodyRequest) else None
    snapshot = runtime.snapshot
    key_hash = _key_hash(snapshot, ask)
    key = snapshot.keys_by_hash.get(key_hash) if key_hash is not None else None
    target = _target(runtime, ask, _model(ask, body), key)
    demand = _body_demand(runtime, ask, body, target) if body is not None else _counts_demand(runtime, ask, target)
    facts = request_facts(target.provider, target.model, key_hash, demand, tuple(ask.tags))
    facts.end_user = ask.end_user
    explanation = await runtime.enforcer.explain(snapshot, facts)
    tokens, cost, worst_tokens, worst_cost = demand(demand.cap)
    denial = explanation.denial
    scope = denial.scope if denial is not None else None
    return {
        **explanation_view(explanation),
        "allowed": explanation.decision is Decision.ALLOW,
        "status": explanation.decision.status,
        "scope": None if scope is None else {"level": scope.level.value, "id": scope.id, "name": scope.name},
        "retry_after_s": denial.retry_after_s if denial is not None else None,
        "provider": target.provider, "model": target.model,
        "estimated_tokens": tokens, "estimated_cost": cost / NANO_PER_USD,
        "worst_case_tokens": worst_tokens, "worst_case_cost": worst_cost / NANO_PER_USD,
        "max_tokens": demand.cap if demand.clampable else None,
    }


def _model(ask: ExplainRequest, body: dict[str, Any] | None) -> str:
    if ask.model is not None:
        return ask.model
    model = body.get("model") if body is not None else None
    if not isinstance(model, str) or not model.strip():
        raise bad_request("give the model, here or in the body", "model")
    return model


def _counts_demand(runtime: ManagedRuntime, ask: ExplainRequest, target: Target) -> Demand:
    settings = runtime.settings
    provider_type = settings.providers[target.provider].type
    rates = runtime.pricing.reservation_rates(provider_type, target.provider, target.model)
    if rates is None and settings.require_price:
        raise invalid("model", model_unpriced(target.provider, target.model).message)
    return demand_of_counts(ask.prompt_tokens, ask.completion_tokens, rates, settings.estimate)


def _body_demand(runtime: ManagedRuntime, ask: ExplainRequest, body: dict[str, Any], target: Target) -> Demand:
    """The demand of ``body`` sent to ``target``, as the proxy computes it: parsed, translated
    for the provider, analysed from the upstream body. A body the proxy would refuse is a 422
    naming the field under ``body``."""
    assert isinstance(ask, ExplainBodyRequest)
    if ask.prompt_tokens or ask.completion_tokens is not None:
        raise invalid("body", "give a body or token counts (prompt_tokens, completion_tokens), not both")
    api = Api(ask.api)
    provider = runtime.providers[target.provider]
    try:
        request = parse_request(api, orjson.dumps({**body, "model": _model(ask, body)}))
        exchange = exchange_for(api, provider, target.model)
        upstream = exchange.upstream_body(request, target.model)
        return demand_of(exchange.upstream_api, upstream, provider, target.model, runtime.pricing,
                         runtime.settings.estimate, runtime.settings.require_price)
    except GatewayError as exc:
        raise invalid(f"body.{exc.param}" if exc.param else "body", exc.message) from None
    except _MALFORMED as exc:  # TranslationError included: a body the provider's API cannot express
        field = getattr(exc, "field", None)
        raise invalid(f"body.{field}" if field else "body", f"the request cannot be sent to provider "
                      f"{provider.name!r} ({provider.type}): {exc}") from None


def _key_hash(snapshot: PolicySnapshot, ask: ExplainRequest) -> str | None:
    """The stored form of the key to explain with: of the value given, or of the key named by id."""
    if ask.virtual_key_id is None:
        return hash_key(ask.virtual_key) if ask.virtual_key is not None else None
    for digest, policy in snapshot.keys_by_hash.items():
        if policy.id == ask.virtual_key_id and not policy.retired_value:
            return digest
    raise not_found("virtual key", ask.virtual_key_id)


def _target(runtime: ManagedRuntime, ask: ExplainRequest, model: str, key: VirtualKeyPolicy | None) -> Target:
    settings = runtime.settings
    if ask.provider is not None:
        if ask.provider not in settings.providers:
            configured = ", ".join(sorted(settings.providers)) or "none"
            raise invalid("provider", f"unknown provider {ask.provider!r} (configured: {configured})")
        return Target(ask.provider, model.removeprefix(ask.provider + "/"))
    resolver = TargetResolver(list(settings.providers), settings.model_aliases, settings.fallbacks)
    try:
        return resolver.resolve(model, key)[0]
    except GatewayError as exc:
        raise invalid("model", exc.message) from None


def explanation_view(explanation: EnforcerExplanation) -> dict[str, Any]:
    """The enforcer's explanation, JSON-ready: every limit in the readout of
    `tollway.governance.inventory` (budgets in USD, times in RFC 3339 UTC) with what this
    request would ask of it."""
    return {
        "decision": explanation.decision.value,
        "message": explanation.denial.message if explanation.denial else
        f"would deny in shadow: {explanation.would_deny.message}" if explanation.would_deny else None,
        "virtual_key_id": explanation.key_id,
        "team_id": explanation.team_id,
        "customer_id": explanation.customer_id,
        "clamped_max_tokens": explanation.clamped_cap,
        "limits": [_status_view(status) for status in explanation.limits],
        "would_deny": _would_deny_view(explanation.would_deny),
    }


def _status_view(status: LimitStatus) -> dict[str, Any]:
    windowless = status.kind is Kind.IN_FLIGHT  # requests in flight: no window, no reset
    return {"level": status.scope.level.value, "id": status.scope.id, "name": status.scope.name,
            "kind": status.kind.value,
            **amounts_view(status.kind, status.limit, status.used, status.reserved, status.remaining),
            "duration": None if windowless else str(status.duration),
            "reset_at": None if windowless else iso_utc(status.reset_at_ms),
            "binding": status.binding,
            "requested": in_units(status.kind, status.requested),
            **treatment_view(status.enforcement, status.shadow),
            "would_deny": status.would_deny}


def _would_deny_view(denial: Denial | None) -> dict[str, Any] | None:
    """The denial a shadow limit would give: the scope fields of a denial, and a message
    that says it was not enforced."""
    if denial is None:
        return None
    scope = denial.scope
    return {"decision": denial.decision.value, "level": scope.level.value if scope else None,
            "id": scope.id if scope else None, "name": scope.name if scope else None,
            "message": f"would deny in shadow: {denial.message}"}
