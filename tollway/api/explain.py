"""`/api/governance/explain`: would a request be allowed now, and where does every limit
that applies to it stand? Answered by the enforcer itself over the policy in force, so
it agrees with what the gateway decides; nothing is reserved or charged.

The request is described by the key (its value, or its id), the model (as clients send
it: ``provider/model``, an alias, or a bare name with ``provider``) and token counts.
Without token counts it is priced like a request with no prompt and the gateway's
default completion estimate.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from tollway.api.context import ManagedRuntime, RuntimeDep
from tollway.api.errors import invalid, not_found
from tollway.api.responses import Explanation
from tollway.api.schemas import ExplainRequest
from tollway.errors import GatewayError
from tollway.governance.decisions import Decision
from tollway.governance.engine import RequestFacts, hash_key
from tollway.governance.model import NANO_PER_USD, PolicySnapshot, VirtualKeyPolicy
from tollway.governance.names import model_key
from tollway.pricing import estimate_cost_nano
from tollway.proxy.targets import Target, TargetResolver

router = APIRouter(prefix="/api/governance", tags=["explain"])


@router.post("/explain", response_model=Explanation, summary="Explain what a request would get now")
async def explain_post(body: ExplainRequest, runtime: RuntimeDep) -> dict[str, Any]:
    return await explain(runtime, body)


@router.get("/explain", response_model=Explanation, summary="Explain what a request would get now (query form)")
async def explain_get(query: Annotated[ExplainRequest, Query()], runtime: RuntimeDep) -> dict[str, Any]:
    """The same as POST; prefer POST with a key value, which would otherwise sit in URL logs."""
    return await explain(runtime, query)


async def explain(runtime: ManagedRuntime, ask: ExplainRequest) -> dict[str, Any]:
    if ask.virtual_key is not None and ask.virtual_key_id is not None:
        raise invalid("virtual_key_id", "give virtual_key or virtual_key_id, not both")
    snapshot = runtime.snapshot
    key_hash = _key_hash(snapshot, ask)
    key = snapshot.keys_by_hash.get(key_hash) if key_hash is not None else None
    target = _target(runtime, ask, key)
    prompt = ask.prompt_tokens
    completion = ask.completion_tokens
    if completion is None:
        completion = runtime.settings.estimate.default_completion_tokens
    provider_type = runtime.settings.providers[target.provider].type
    price = runtime.pricing.price_for(provider_type, target.provider, target.model)
    cost = estimate_cost_nano(price, prompt, completion)
    facts = RequestFacts(target.provider, model_key(target.model), key_hash, prompt + completion, cost)
    explanation = await runtime.enforcer.explain(snapshot, facts)
    denial = explanation.denial
    scope = denial.scope if denial is not None else None
    return {
        **explanation.to_dict(),
        "allowed": explanation.decision is Decision.ALLOW,
        "status": explanation.decision.status,
        "scope": None if scope is None else {"level": scope.level.value, "id": scope.id, "name": scope.name},
        "retry_after_s": denial.retry_after_s if denial is not None else None,
        "provider": target.provider, "model": target.model,
        "estimated_tokens": prompt + completion, "estimated_cost": cost / NANO_PER_USD,
    }


def _key_hash(snapshot: PolicySnapshot, ask: ExplainRequest) -> str | None:
    """The stored form of the key to explain with: of the value given, or of the key named by id."""
    if ask.virtual_key_id is None:
        return hash_key(ask.virtual_key) if ask.virtual_key is not None else None
    for digest, policy in snapshot.keys_by_hash.items():
        if policy.id == ask.virtual_key_id and not policy.retired_value:
            return digest
    raise not_found("virtual key", ask.virtual_key_id)


def _target(runtime: ManagedRuntime, ask: ExplainRequest, key: VirtualKeyPolicy | None) -> Target:
    settings = runtime.settings
    if ask.provider is not None:
        if ask.provider not in settings.providers:
            configured = ", ".join(sorted(settings.providers)) or "none"
            raise invalid("provider", f"unknown provider {ask.provider!r} (configured: {configured})")
        model = ask.model.removeprefix(ask.provider + "/")
        return Target(ask.provider, model)
    resolver = TargetResolver(list(settings.providers), settings.model_aliases, settings.fallbacks)
    try:
        return resolver.resolve(ask.model, key)[0]
    except GatewayError as exc:
        raise invalid("model", exc.message) from None
