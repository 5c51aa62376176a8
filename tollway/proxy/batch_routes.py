"""The batch routes and their follow-up, built together (the runtime holds one `BatchRoutes`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from decimal import Decimal

from tollway.asgi import Receive, Scope, Send
from tollway.config.schema import BatchesConfig, PriceConfig
from tollway.proxy.batch_anthropic import PATH as ANTHROPIC_PATH
from tollway.proxy.batch_anthropic import PREFIX as ANTHROPIC_PREFIX
from tollway.proxy.batch_anthropic import AnthropicBatches
from tollway.proxy.batch_follow import BatchFollower
from tollway.proxy.batch_gate import BatchGate, BatchServices
from tollway.proxy.batch_openai import BATCHES_PREFIX, FILES_PREFIX, OpenAIBatches
from tollway.proxy.batch_prices import BatchPrices

PREFIXES = (FILES_PREFIX, BATCHES_PREFIX, ANTHROPIC_PREFIX)
"""Paths below which a batch or file is addressed by its id."""
ROUTES = (("POST", "/v1/files"), ("POST", "/v1/batches"), ("GET", "/v1/batches"), ("POST", ANTHROPIC_PATH),
          ("GET", ANTHROPIC_PATH))
"""The batch routes matched by exact path."""
PATTERN_ROUTES = ("GET /v1/files/{id}", "GET /v1/files/{id}/content", "DELETE /v1/files/{id}",
                  "GET /v1/batches/{id}", "POST /v1/batches/{id}/cancel",
                  "GET /v1/messages/batches/{id}", "GET /v1/messages/batches/{id}/results",
                  "POST /v1/messages/batches/{id}/cancel", "DELETE /v1/messages/batches/{id}")


def batch_prices(pricing: Mapping[str, PriceConfig]) -> BatchPrices:
    """The batch ratios of the config's `pricing:` overrides."""
    ratios: dict[str, Decimal] = {name: price.batch_ratio for name, price in pricing.items()
                                  if price.batch_ratio is not None}
    return BatchPrices(ratios)


class BatchRoutes:
    """OpenAI's files and batches, Anthropic's message batches, and the follow-up."""

    def __init__(self, services: BatchServices, config: BatchesConfig) -> None:
        gate = BatchGate(services)
        self.follower = BatchFollower(gate, config)
        self.openai = OpenAIBatches(gate, self.follower.first_poll_ms, self.follower.wake)
        self.anthropic = AnthropicBatches(gate, self.follower.first_poll_ms, self.follower.wake)

        self._table: dict[tuple[str, str], Callable[[Scope, Receive, Send], Awaitable[None]]] = dict(zip(ROUTES, (
            self.openai.upload_file, self.openai.create_batch, self.openai.list_batches, self.anthropic.create,
            self.anthropic.list)))

    async def handle(self, route: tuple[str, str], scope: Scope, receive: Receive, send: Send) -> None:
        """One of `ROUTES`."""
        await self._table[route](scope, receive, send)

    async def by_id(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A route below `PREFIXES`."""
        if scope["path"].startswith(ANTHROPIC_PREFIX):
            await self.anthropic.by_id(scope, receive, send)
        else:
            await self.openai.by_id(scope, receive, send)
