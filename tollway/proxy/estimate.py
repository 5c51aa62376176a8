"""How much a request is expected to use, and may use at most, for its reservation.

`Demand` turns a request's `WorstCase` into the amounts governance reserves, as a
function of the output cap (strict enforcement may lower it): the estimate, for limits in
``estimate`` mode, and the worst case, for ``strict`` ones.
"""

from __future__ import annotations

from dataclasses import dataclass

from tollway.config.schema import EstimateConfig
from tollway.pricing import ReservationRates, scaled_cost
from tollway.providers.client import Api
from tollway.proxy.request import ClientRequest
from tollway.proxy.worst_case import WorstCase

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


def demand_for(request: ClientRequest, worst: WorstCase, config: EstimateConfig,
               rates: ReservationRates | None) -> Demand:
    """The demand of ``request``, whose upstream body has the worst case ``worst``.

    The prompt estimate is the analysis's (`WorstCase.prompt_estimate`: per-script weights,
    token arrays by length), scaled by ``4 / bytes_per_prompt_token`` (the default, 4, keeps it
    as fitted; a lower setting reserves more), and never above the worst case.
    """
    scaled = worst.prompt_estimate * _CALIBRATED_BYTES_PER_TOKEN // config.bytes_per_prompt_token
    prompt = min(worst.prompt_tokens, max(1, scaled))
    cap = worst.cap if worst.cap is not None else config.injected_max_tokens
    return Demand(worst, prompt, config.default_completion_tokens, rates or _FREE, cap)
