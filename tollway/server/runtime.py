"""Everything a running gateway holds, wired by construction: started at lifespan
startup, stopped (with a last usage flush) at shutdown."""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from sqlalchemy.exc import DBAPIError

from tollway.alerts.delivery import Dispatcher
from tollway.alerts.monitor import AlertMonitor
from tollway.api.app import create_management_app
from tollway.config import Settings
from tollway.config.schema import duration_s
from tollway.governance.counters.base import CounterStore
from tollway.governance.counters.end_user_residency import EndUserResidency
from tollway.governance.counters.memory import MemoryCounterStore
from tollway.governance.durations import parse_duration
from tollway.governance.enforcer import Enforcer
from tollway.governance.model import Enforcement, PolicySnapshot
from tollway.pricing import ModelPrice, PriceCatalog, load_genai_catalog
from tollway.pricing_media import media_price
from tollway.providers.registry import build_providers
from tollway.proxy.batch_gate import BatchServices
from tollway.proxy.batch_routes import BatchRoutes, batch_prices
from tollway.proxy.media_route import MediaRoute
from tollway.proxy.pipeline import Proxy
from tollway.proxy.policy_source import PolicySource
from tollway.proxy.responses_route import ResponsesRoute
from tollway.proxy.targets import TargetResolver
from tollway.server.counters_setup import build_counter_store, claim_flush, counters_health
from tollway.server.key_info_route import KeyInfoRoute
from tollway.server.metric_labels import label_sets
from tollway.server.models_catalog import ModelCatalog
from tollway.server.models_route import ModelsRoute
from tollway.server.recorder import Recorder
from tollway.server.services import Services
from tollway.store.bootstrap import apply_config
from tollway.store.database import Database, DatabaseUnavailable, describe_error
from tollway.store.end_user_counters import load_end_user_counters
from tollway.store.key_activity import KeyActivity
from tollway.store.key_cache import KeyCache, count_virtual_keys, held_counters
from tollway.store.migrate import upgrade
from tollway.store.policy_sync import PolicyFollower, PreparedChange
from tollway.store.request_log import RequestLogWriter
from tollway.store.request_log_retention import prune_request_log, retention_cutoff
from tollway.store.usage import load_counters, ms_to_datetime, save_counters
from tollway.store.usage_flush import UsageFlusher
from tollway.telemetry import Metrics
from tollway.ui import create_ui_app

log = logging.getLogger(__name__)
_REFRESH_INTERVAL_S = 0.25  # a poll reads one row; a change since is applied incrementally
_SETTLE_WAIT_S = 2.0
_FOLDED_DENIALS_INTERVAL_S = 5.0  # how late a minute's folded 401s may reach the request log
_RETENTION_INTERVAL_S = 3600.0  # deleting old request log rows hourly keeps each run short


def price_catalog(settings: Settings) -> PriceCatalog:
    """The price catalog with the config file's per-model overrides and default."""
    def price(config) -> ModelPrice:
        return ModelPrice(config.input or Decimal(0), config.output or Decimal(0), config.cached_input,
                          config.cache_write, media_price(config), tokens=config.input is not None)

    overrides = {name: price(config) for name, config in settings.pricing.items()}
    default = price(settings.default_price) if settings.default_price else None
    return PriceCatalog(overrides, default, logging.getLogger("tollway.pricing"))


class Runtime:
    """The gateway's parts. Nothing here runs SQL on the request path: the policy is a
    snapshot refreshed in the background, usage is flushed in the background."""

    def __init__(self, settings: Settings, services: Services | None = None, *,
                 prepare_database: bool = True) -> None:
        self.settings = settings
        self.services = services or Services()
        self.prepare_database = prepare_database
        self.clock_ms: Callable[[], int] = self.services.clock_ms
        self.metrics = Metrics(label_sets(settings))
        self.pricing: PriceCatalog = price_catalog(settings)
        self.management: Any = None  # the /api application, mounted by the management package
        self.ui: Any = None  # the /ui application (admin web UI), over the management API
        self.snapshot = PolicySnapshot(enforce_virtual_keys=settings.enforce_virtual_keys)
        self.generated_keys: list = []
        self._tasks: list[asyncio.Task] = []
        self._failures: dict[str, int] = {}  # background job -> failures in a row
        self.db: Database
        self.store: CounterStore
        self.enforcer: Enforcer
        self.proxy: Proxy
        self.responses: ResponsesRoute
        self.media: MediaRoute
        self.batches: BatchRoutes
        self.catalog: ModelCatalog
        self.models: ModelsRoute
        self.key_info: KeyInfoRoute
        self.log_writer: RequestLogWriter | None = None
        self.usage: UsageFlusher
        self.key_activity = KeyActivity()  # keys' last_used_at, written with the usage flush
        self.alerts: AlertMonitor | None = None
        self.key_cache: KeyCache | None = None  # keys loaded on demand (more stored than loaded at start)

    async def start(self) -> None:
        settings = self.settings
        self.loop = asyncio.get_running_loop()  # for callers on other threads (tests, admin tools)
        if self.prepare_database:
            await upgrade(settings.database_url)
        self.db = self.services.database or Database(settings.database_url)
        await self.db.ping()
        if self.prepare_database:
            self.generated_keys = await apply_config(self.db, settings, now=ms_to_datetime(self.clock_ms()))
        defaults = settings.governance_defaults
        keys_on_demand = await count_virtual_keys(self.db) > settings.virtual_key_cache.load_all_up_to
        self.policy = PolicyFollower(self.db, enforce_virtual_keys=settings.enforce_virtual_keys,
                                     defaults=Enforcement(defaults.enforcement == "strict",
                                                          defaults.on_insufficient == "clamp"),
                                     keys_on_demand=keys_on_demand)
        self.snapshot = await self.policy.reload()
        self.store = self.services.counter_store or build_counter_store(
            settings.counters, self.metrics, seed=lambda: load_counters(self.db))
        # Keys loaded on demand bring their counters along; at start only the others'.
        stored = await (held_counters(self.db, self.snapshot) if keys_on_demand else load_counters(self.db))
        await self.store.load(stored)
        self.key_cache = self._key_cache() if keys_on_demand else None
        self.usage = UsageFlusher(self.db, stored)
        self.enforcer = Enforcer(self.store, self.clock_ms, EndUserResidency(
            self.store, lambda names: load_end_user_counters(self.db, names),
            lambda states: save_counters(self.db, states), evicts_cells=isinstance(self.store, MemoryCounterStore)))
        self.providers = build_providers(settings, clock=lambda: self.clock_ms() / 1000)
        if settings.request_log:
            self.log_writer = RequestLogWriter(self.db)
            await self.log_writer.start()
        self.metrics.gauge("tollway_reservations_in_flight", "Reservations not yet settled",
                           lambda: self.enforcer.reservations_in_flight)
        self.metrics.gauge("tollway_requests_waiting_for_slot",
                           "Requests of this process waiting for a concurrency slot (queue_timeout_ms)",
                           lambda: self.enforcer.requests_waiting)
        self.metrics.gauge("tollway_usage_flush_failures", "Usage flushes failed in a row (0: the last one worked)",
                           lambda: self._failures.get("usage-flush", 0))
        if self.log_writer is not None:
            writer = self.log_writer
            self.metrics.gauge("tollway_request_log_pending", "Request log records waiting to be written",
                               lambda: writer.pending)
            self.metrics.gauge("tollway_request_log_dropped", "Request log records lost (buffer full or unstorable)",
                               lambda: writer.dropped)
        self.recorder = Recorder(self.metrics, self.log_writer, settings.request_log_unauthenticated_per_minute,
                                 self.key_activity)
        resolver = TargetResolver(list(settings.providers), settings.model_aliases, settings.fallbacks)
        policies = PolicySource(lambda: self.snapshot,
                                self.key_cache.snapshot_with if self.key_cache is not None else None)
        self.proxy = Proxy(
            providers=self.providers,
            resolver=resolver,
            enforcer=self.enforcer,
            snapshot=policies,
            pricing=self.pricing,
            sink=self.recorder,
            estimates=settings.estimate,
            require_price=settings.require_price,
            max_body_bytes=settings.max_body_bytes,
        )
        self.responses = ResponsesRoute(proxy=self.proxy, providers=self.providers, enforcer=self.enforcer,
                                        snapshot=policies, sink=self.recorder,
                                        max_body_bytes=settings.max_body_bytes)
        self.media = MediaRoute(providers=self.providers, resolver=resolver, enforcer=self.enforcer,
                                snapshot=policies, pricing=self.pricing, sink=self.recorder,
                                estimates=settings.estimate, media=settings.media,
                                max_body_bytes=settings.max_body_bytes, require_price=settings.require_price)
        self.batches = BatchRoutes(BatchServices(
            providers=self.providers, resolver=resolver, enforcer=self.enforcer, snapshot=policies, counters=self.store,
            pricing=self.pricing, batch_prices=batch_prices(settings.pricing), sink=self.recorder,
            estimates=settings.estimate, db=self.db, clock_ms=self.clock_ms, max_body_bytes=settings.max_body_bytes,
            max_file_bytes=settings.batches.max_file_bytes, require_price=settings.require_price), settings.batches)
        self.catalog = ModelCatalog(settings, self.providers)
        self.models = ModelsRoute(self.catalog, policies, settings.model_aliases, self.clock_ms)
        self.key_info = KeyInfoRoute(policies, self.store, self.clock_ms)
        if settings.management_api:
            self.management = create_management_app(self)
            self.ui = create_ui_app(self.management, settings, self.clock_ms)
        load_genai_catalog()  # it would load on the first priced request, and not be frozen
        # Everything built so far lives as long as the process: keep it out of the
        # collector's scans so a collection costs what the requests allocate, not more.
        gc.freeze()
        flush_s = (parse_duration(settings.flush_interval).fixed_ms or 10_000) / 1000
        self._tasks = [
            asyncio.create_task(self._every(flush_s, self._periodic_flush, "usage-flush"), name="usage-flush"),
            asyncio.create_task(self._every(_REFRESH_INTERVAL_S, self.refresh_policy, "policy-refresh"),
                                name="policy-refresh"),
            asyncio.create_task(self._every(_FOLDED_DENIALS_INTERVAL_S, self._flush_folded_denials, "folded-denials"),
                                name="folded-denials"),
            asyncio.create_task(self.batches.follower.run(), name="batch-follow-up"),
        ]
        self.alerts = AlertMonitor(settings.alerts, self.db, self.store, lambda: self.snapshot, self.clock_ms,
                                   Dispatcher(self.db, settings.alerts, self.clock_ms))
        await self.alerts.start()
        dispatcher = self.alerts.dispatcher
        self.metrics.gauge("tollway_alert_deliveries_pending", "Alert deliveries queued or waiting for a retry",
                           lambda: dispatcher.pending)
        self.metrics.gauge("tollway_alert_deliveries_dropped", "Alert deliveries dropped (a receiver's queue was full)",
                           lambda: dispatcher.dropped)
        self._tasks.append(asyncio.create_task(self._every(self.alerts.interval_s, self.alerts.tick, "alerts"),
                                               name="alerts"))
        if settings.request_log_retention:
            self._tasks.append(asyncio.create_task(
                # First a minute after start: a gateway restarted more often than hourly still prunes.
                self._every(_RETENTION_INTERVAL_S, self.prune_request_log, "request-log-retention", first_after=60.0),
                name="request-log-retention"))

    def _key_cache(self) -> KeyCache:
        config = self.settings.virtual_key_cache
        cache = KeyCache(self.policy, self.store, max_keys=config.max_keys, miss_ttl_s=duration_s(config.miss_ttl),
                         max_pending=config.max_pending_lookups)
        self.metrics.gauge("tollway_virtual_keys_held", "Virtual keys in this process's policy",
                           lambda: len(self.policy.snapshot.keys_by_hash))
        self.metrics.gauge("tollway_virtual_key_lookups", "Database lookups of virtual keys loaded on demand",
                           lambda: cache.queries)
        return cache

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        # Requests the server cancelled at the end of its grace period settle as they unwind:
        # give them a moment, so that the last flush has their usage.
        deadline = time.monotonic() + _SETTLE_WAIT_S
        while self.enforcer.reservations_in_flight and time.monotonic() < deadline:  # noqa: ASYNC110 - settlements signal nothing to wait on
            await asyncio.sleep(0.01)
        try:
            await self.flush_usage()
        except Exception:
            log.exception("final usage flush failed")
        if self.alerts is not None:
            await self.alerts.close()
        if self.log_writer is not None:
            self.recorder.flush_summaries(self.clock_ms(), final=True)
            await self.log_writer.close()
        for provider in self.providers.values():
            await provider.close()
        await self.store.close()
        await self.db.close()

    async def _flush_folded_denials(self) -> None:
        self.recorder.flush_summaries(self.clock_ms())

    async def flush_usage(self) -> None:
        await self.usage.flush_from(self.store)
        await self.key_activity.flush(self.db)

    async def prune_request_log(self) -> int:
        """Delete request log rows older than ``request_log_retention``; returns how many."""
        retention = self.settings.request_log_retention
        if retention is None:
            return 0
        removed = await prune_request_log(self.db, retention_cutoff(retention, self.clock_ms()))
        if removed:
            log.info("removed %d request log rows older than %s", removed, retention)
        return removed

    async def _periodic_flush(self) -> None:
        """With a shared store (Redis), one process per interval writes the usage; every
        process writes when its keys were last used (only it knows), and lets go of the
        end users idle for ``counters.end_user_idle`` (after the flush: never an older
        state written over the evicted one)."""
        if await claim_flush(self.store, parse_duration(self.settings.flush_interval).fixed_ms or 10_000):
            await self.flush_usage()
        else:
            await self.key_activity.flush(self.db)
        await self.evict_idle_end_users()

    async def evict_idle_end_users(self) -> int:
        """Counters of end users idle for ``counters.end_user_idle`` out of this process (see
        `EndUserResidency`); returns how many."""
        idle_ms = parse_duration(self.settings.counters.end_user_idle).fixed_ms or 3_600_000
        assert self.enforcer.end_users is not None
        return await self.enforcer.end_users.evict_idle(self.clock_ms(), idle_ms)

    async def refresh_policy(self, force: bool = False, prepared: PreparedChange | None = None) -> None:
        """Bring the policy to the stored configuration: the changes since the version
        held, applied incrementally; everything when ``force`` (or the log has a gap).
        ``prepared``: a change this node just committed, already applied inside its
        transaction (`PolicyFollower.prepare`): swapped in without reading anything."""
        if force:
            await self.policy.reload()
        elif prepared is None or not await self.policy.install(prepared):
            await self.policy.refresh()
        # The follower's policy now, not what this call's refresh returned: the poller's
        # call and an API change's overlap, and one resuming after the other must not
        # put back the older snapshot it was handed.
        self.snapshot = self.policy.snapshot

    async def health(self) -> dict[str, Any]:
        try:
            await asyncio.wait_for(self.db.ping(), 2)
            database = "ok"
        except Exception as exc:
            database = f"unavailable: {type(exc).__name__}"
        counters = await counters_health(self.store)
        # Requests still flow while the database is down (on the in-memory policy and
        # counters), and with fail_open while Redis is: degraded, not down.
        status = "ok" if database == "ok" and counters == "ok" else "degraded"
        return {"status": status, "database": database, "counters": counters,
                "counter_backend": self.settings.counters.backend, "policy_version": self.snapshot.version}

    async def _every(self, seconds: float, job: Callable[[], Any], name: str, first_after: float | None = None) -> None:
        """Run ``job`` every ``seconds`` (the first time after ``first_after``, default
        ``seconds``). A failure is logged when it starts and when it ends, not every time
        (the policy refresh would log a traceback a second while the database is down);
        ``_failures`` counts it for the metrics meanwhile."""
        wait = seconds if first_after is None else first_after
        while True:
            await asyncio.sleep(wait)
            wait = seconds
            try:
                await job()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures = self._failures[name] = self._failures.get(name, 0) + 1
                if failures == 1:
                    log.warning("background job %s failed, will retry every %g s: %s", name, seconds,
                                describe_error(exc), exc_info=not isinstance(exc, (DBAPIError, OSError, DatabaseUnavailable)))
                else:
                    log.debug("background job %s failed again (%d in a row): %s", name, failures, describe_error(exc))
            else:
                failures = self._failures.pop(name, 0)
                if failures:
                    log.info("background job %s recovered after %d failures", name, failures)
