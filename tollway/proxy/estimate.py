"""How much a request is expected to use, and may use at most, for its reservation.

`Demand` turns a request's `WorstCase` into the amounts governance reserves, as a
function of the output cap (strict enforcement may lower it): the estimate, for limits in
``estimate`` mode, and the worst case, for ``strict`` ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tollway.config.schema import EstimateConfig
from tollway.errors import model_unpriced
from tollway.governance.engine import RequestFacts
from tollway.governance.names import model_key
from tollway.pricing import PriceCatalog, ReservationRates, scaled_cost
from tollway.providers.client import Api, ProviderClient
from tollway.proxy.request import ClientRequest
from tollway.proxy.worst_case import WorstCase, analyse

_FREE = ReservationRates(0, 0, 0)
# The bytes_per_prompt_token at which the estimate is used as fitted (the setting's default).
_CALIBRATED_BYTES_PER_TOKEN = 4


def estimate_tokens(request: ClientRequest, config: EstimateConfig) -> tuple[int, int]:
    """(prompt, completion) token estimates from the client's body alone.

    The prompt is estimated from the body's size (cheap and never low for JSON, whose
    punctuation only adds bytes); the completion is ``max_tokens`` (``max_output_tokens`` on the
    Responses API) when the client set it, else the configured default. Settlement corrects both to the actual usage.
    """
    if request.api is Api.COUNT_TOKENS or request.api is Api.RESPONSES_INPUT_TOKENS:  # a request slot, no tokens
        return 0, 0
    prompt = max(1, request.size // config.bytes_per_prompt_token)
    if request.api is Api.EMBEDDINGS:
        return prompt, 0
    return prompt, request.max_tokens if request.max_tokens is not None else config.default_completion_tokens


@dataclass(slots=True)
class Demand:
    """A request's amounts at a given output cap (per generation): ``__call__`` gives
    (estimated tokens, estimated cost, worst-case tokens, worst-case cost), costs in nano-dollars.

    ``cap`` is the cap reserved for: the request's own, or ``injected_max_tokens`` when it
    sets none (strict enforcement then sends that cap upstream).
    """

    worst: WorstCase
    prompt_estimate: int
    uncapped_estimate: int  # completion tokens per generation estimated when no cap is set
    rates: ReservationRates
    cap: int

    def __call__(self, cap: int) -> tuple[int, int, int, int]:
        worst, rates = self.worst, self.rates
        per_generation = cap if worst.cap is not None else min(cap, self.uncapped_estimate)
        estimated_output = worst.output_tokens(per_generation) if worst.cap != 0 else 0
        worst_output = worst.output_tokens(cap) if worst.cap != 0 else 0
        return (self.prompt_estimate + estimated_output,
                scaled_cost(self.prompt_estimate * rates.input + estimated_output * rates.output),
                worst.prompt_tokens + worst_output,
                scaled_cost(worst.prompt_tokens * rates.worst_input + worst_output * rates.output))

    @property
    def clampable(self) -> bool:
        """Whether the request has an output cap to lower (embeddings have none)."""
        return self.worst.cap != 0


def demand_for(request: ClientRequest | None, worst: WorstCase, config: EstimateConfig,
               rates: ReservationRates | None) -> Demand:
    """The demand of a request whose upstream body has the worst case ``worst`` (``request``
    is no longer read: the estimate comes from the upstream body, in ``worst``).

    The prompt estimate is the analysis's (`WorstCase.prompt_estimate`: per-script weights,
    token arrays by length), scaled by ``4 / bytes_per_prompt_token`` (the default, 4, keeps it
    as fitted; a lower setting reserves more), and never above the worst case.
    """
    scaled = worst.prompt_estimate * _CALIBRATED_BYTES_PER_TOKEN // config.bytes_per_prompt_token
    prompt = min(worst.prompt_tokens, max(1, scaled))
    cap = worst.cap if worst.cap is not None else config.injected_max_tokens
    return Demand(worst, prompt, config.default_completion_tokens, rates or _FREE, cap)


def demand_of(upstream_api: Api, body: dict[str, Any], provider: ProviderClient, model: str, pricing: PriceCatalog,
              config: EstimateConfig, require_price: bool) -> Demand:
    """The demand of the exact ``body`` sent upstream to ``provider``'s ``model``: its worst
    case (a 400 on cap fields that conflict), priced at the reservation rates (`model_unpriced`
    when none is known and ``require_price`` is set). The proxy and the explain API both
    compute a request's reservation here."""
    worst = analyse(upstream_api, body, model)
    rates = pricing.reservation_rates(provider.type, provider.name, model)
    if rates is None and require_price:
        raise model_unpriced(provider.name, model)
    return demand_for(None, worst, config, rates)


def demand_of_counts(prompt_tokens: int, completion_tokens: int | None, rates: ReservationRates | None,
                     config: EstimateConfig) -> Demand:
    """The demand of a request described by its token counts alone (the explain API without
    a body): a prompt of exactly ``prompt_tokens``, one generation capped at
    ``completion_tokens`` (None: no cap, as a request that sets none; 0: no output at all)."""
    cap_field = "max_tokens" if completion_tokens else None
    worst = WorstCase(prompt_tokens, 1, completion_tokens, cap_field, prompt_estimate=prompt_tokens)
    return demand_for(None, worst, config, rates)


def request_facts(provider: str, model: str, key_hash: str | None, demand: Demand,
                  tags: tuple[str, ...] = ()) -> RequestFacts:
    """What governance is told about a request of ``demand`` at its own (or injected) cap."""
    return RequestFacts(provider, model_key(model), key_hash, *demand(demand.cap),
                        demand=demand if demand.clampable else None, cap=demand.cap, tags=tags)
