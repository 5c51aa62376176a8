"""The follow-up of the batches this gateway submitted: ask the provider, with backoff,
until a batch has ended, then settle it (refund what its results show was not used).

Every node runs it; the database decides who follows which batch (`store.batches.claim`:
a lease on the row), so several nodes never settle one batch twice, and a batch submitted
before a restart is settled by whichever node runs after it. The charge stays until a
settlement is recorded, so a failure anywhere here errs towards over-charging, never under.
"""

from __future__ import annotations

import asyncio
import logging
import math
import uuid
from datetime import timedelta

from tollway.config.schema import BatchesConfig, duration_s
from tollway.providers.adapters.base import MESSAGE_BATCHES, OPENAI_BATCHES
from tollway.providers.client import ProviderClient, ProviderKey
from tollway.proxy.batch_charge import CounterCharge, Unused, refund_unused
from tollway.proxy.batch_gate import BatchGate, call, stream_to
from tollway.proxy.batch_prices import at_ratio
from tollway.proxy.batch_results import ResultsReader, ResultsUsage, ended, status_of
from tollway.proxy.outcome import Outcome
from tollway.proxy.passthrough import load_object
from tollway.store.batch_tables import Batch
from tollway.store.batches import Settlement, claim, due_batches, mark_settled, note_files, reschedule
from tollway.store.usage import ms_to_datetime
from tollway.usage import Usage

log = logging.getLogger(__name__)
_BATCHES_PER_TICK = 50


class BatchFollower:
    """Follows batches up; the runtime calls `tick` every ``poll_interval`` (and sooner after a cancel)."""

    def __init__(self, gate: BatchGate, config: BatchesConfig) -> None:
        self._gate = gate
        self.interval_s = duration_s(config.poll_interval)
        self._first_ms = round(self.interval_s * 1000)
        self._max_ms = round(duration_s(config.max_poll_interval) * 1000)
        self._lease = timedelta(seconds=duration_s(config.lease))
        self.owner = uuid.uuid4().hex  # this node, in the rows it claims
        self.woken = asyncio.Event()

    @property
    def first_poll_ms(self) -> int:
        return self._first_ms

    def wake(self) -> None:
        """A batch may have ended (it was cancelled): follow up at the next tick."""
        self.woken.set()

    async def run(self) -> None:
        """Tick every ``interval_s``, or at once when woken, until cancelled. A failure (the
        database down) is logged when it starts and when it ends, not at every tick."""
        failures = 0
        while True:
            try:
                await asyncio.wait_for(self.woken.wait(), self.interval_s)
            except TimeoutError:
                pass
            self.woken.clear()
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                if failures == 1:
                    log.warning("batch follow-up failed, will retry every %g s: %s", self.interval_s, exc)
            else:
                if failures:
                    log.info("batch follow-up recovered after %d failures", failures)
                failures = 0

    async def tick(self, *, all_open: bool = False) -> int:
        """Follow up every batch due (``all_open``: every open batch, due or not); returns how many settled."""
        services = self._gate.services
        now_ms = services.clock_ms()
        horizon = ms_to_datetime(now_ms + (366 * 86_400_000 if all_open else 0))
        settled = 0
        for batch_id in await due_batches(services.db, horizon, _BATCHES_PER_TICK):
            settled += await self.follow(batch_id)
        return settled

    async def follow(self, batch_id: str) -> bool:
        """Ask the provider about one batch and settle it if it has ended; True when settled here."""
        services = self._gate.services
        row = await claim(services.db, batch_id, self.owner, ms_to_datetime(services.clock_ms()), self._lease)
        if row is None:
            return False
        try:
            return await self._follow(row)
        except Exception as exc:
            log.warning("batch %s: follow-up failed (%s); will ask again", batch_id, exc)
            await self._later(row, row.provider_status)
            return False

    async def _follow(self, row: Batch) -> bool:
        provider = self._gate.services.providers.get(row.provider)
        if provider is None:
            log.warning("batch %s: provider %r is no longer configured; its charge stays", row.id, row.provider)
            await self._later(row, row.provider_status)
            return False
        key = self._gate.provider_key(provider, row.model, row.provider_key_id)
        path = f"/v1/messages/batches/{row.id}" if row.api == MESSAGE_BATCHES else f"/batches/{row.id}"
        status, data, _ = await call(provider, "GET", _url(provider, path), key)
        batch = load_object(data) if status < 300 else None
        if batch is None:
            await self._later(row, row.provider_status)
            return False
        output, error = batch.get("output_file_id"), batch.get("error_file_id")
        if row.api == OPENAI_BATCHES:
            await note_files(self._gate.services.db, row.id, output if isinstance(output, str) else None,
                             error if isinstance(error, str) else None)
        if not ended(row.api, batch):
            await self._later(row, status_of(row.api, batch))
            return False
        results = await self._results(provider, key, row, output if isinstance(output, str) else None)
        if results is None:  # ended, but its results cannot be read yet
            await self._later(row, status_of(row.api, batch))
            return False
        return await self._settle(provider, row, status_of(row.api, batch), results)

    async def _results(self, provider: ProviderClient, key: ProviderKey, row: Batch,
                       output_file_id: str | None) -> ResultsUsage | None:
        ratio = self._gate.services.batch_prices.ratio(provider.type, provider.name, row.model)
        pricing = self._gate.services.pricing

        def cost_of(usage: Usage) -> int:
            return at_ratio(pricing.cost_nano(provider.type, provider.name, row.model, usage), ratio)

        if row.api == MESSAGE_BATCHES:
            path = f"/v1/messages/batches/{row.id}/results"
        elif output_file_id is not None:
            path = f"/files/{output_file_id}/content"
        else:  # ended with no output: nothing ran
            return ResultsUsage(Usage(), 0, 0, 0)
        reader = ResultsReader(row.api, cost_of)
        return reader.total() if await stream_to(provider, _url(provider, path), key, reader.feed) else None

    async def _settle(self, provider: ProviderClient, row: Batch, provider_status: str, results: ResultsUsage) -> bool:
        services = self._gate.services
        now_ms = services.clock_ms()
        tokens, cost = results.usage.total_tokens, results.cost_nano
        # Results whose usage could not be read keep their share of the worst case.
        kept = results.unreadable / row.requests if row.requests else 0.0
        unused = Unused(max(0, row.requests - results.answered - results.unreadable),
                        max(0, row.charged_tokens - tokens - math.ceil(row.charged_tokens * kept)),
                        max(0, row.charged_cost_nano - cost - math.ceil(row.charged_cost_nano * kept)))
        settlement = Settlement(provider_status, tokens, cost, results.answered + results.unreadable)
        if not await mark_settled(services.db, row.id, self.owner, ms_to_datetime(now_ms), settlement):
            return False
        charges = [CounterCharge.from_row(charge) for charge in row.charges]
        await refund_unused(services.counters, charges, unused, now_ms)
        # The request log's second row of the batch: what it used and cost (the submission's
        # row costs nothing; until now the charge showed on the limits, not in spend).
        outcome = Outcome(row.id, "batches", now_ms, provider=row.provider, model=row.model,
                          key_id=row.virtual_key_id, team_id=row.team_id, customer_id=row.customer_id,
                          usage=results.usage, cost_nano=cost)
        services.sink.record(outcome)
        log.info("batch %s %s: charged %d tokens / %d nano-USD, used %d / %d", row.id, provider_status,
                 row.charged_tokens, row.charged_cost_nano, tokens, cost)
        return True

    async def _later(self, row: Batch, provider_status: str | None) -> None:
        delay = min(self._max_ms, self._first_ms * 2 ** min(row.polls, 20))
        next_poll = ms_to_datetime(self._gate.services.clock_ms() + delay)
        await reschedule(self._gate.services.db, row.id, self.owner, next_poll, row.polls + 1, provider_status)


def _url(provider: ProviderClient, path: str) -> str:
    return provider.adapter.batch_url(provider.base_url, provider.settings, path)
