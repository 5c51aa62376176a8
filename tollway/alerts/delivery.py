"""Posting alerts to webhooks, off the request path: a bounded queue, a fixed number of
workers, a timeout per attempt and retries with capped exponential backoff. A receiver
that is down or slow holds at most one worker per attempt in flight, for at most the
timeout; retries wait on a timer, not on a worker."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp
import orjson

from tollway.alerts.config import AlertsConfig
from tollway.alerts.payload import SIGNATURE_HEADER, signature, slack_body
from tollway.alerts.records import NewDelivery, record_attempt
from tollway.governance.durations import parse_duration
from tollway.store.database import Database, describe_error
from tollway.store.usage import ms_to_datetime

log = logging.getLogger(__name__)
_RETRIED_STATUSES = frozenset({408, 425, 429})  # and every 5xx; other 4xx will not change on a retry
_ERROR_CHARS = 500
_IDLE_S = 300.0


@dataclass(slots=True)
class _Job:
    delivery: NewDelivery
    body: bytes
    attempts: int = 0


@dataclass(slots=True)
class _Lane:
    """One receiver's queue and workers: a receiver that is slow or down fills its own
    lane, never another's."""

    queue: asyncio.Queue[_Job]
    workers: list[asyncio.Task[None]]


class Dispatcher:
    """Delivers `NewDelivery`s; `submit` never waits (a full lane drops and records it).

    Each receiver (URL) gets ``concurrency`` workers and a queue of ``queue_size``,
    created on its first delivery."""

    def __init__(self, db: Database, config: AlertsConfig, clock_ms: Callable[[], int]) -> None:
        self.db = db
        self.config = config
        self.clock_ms = clock_ms
        self.timeout_s = (parse_duration(config.timeout).fixed_ms or 5_000) / 1000
        self._lanes: dict[str, _Lane] = {}
        self._timers: set[asyncio.TimerHandle] = set()
        self._records: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None
        self.dropped = 0

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout_s))

    async def close(self) -> None:
        for timer in self._timers:
            timer.cancel()
        workers = [worker for lane in list(self._lanes.values()) for worker in list(lane.workers)]
        for worker in workers:
            worker.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    @property
    def pending(self) -> int:
        """Deliveries queued or waiting for a retry."""
        return sum(lane.queue.qsize() for lane in self._lanes.values()) + len(self._timers)

    def submit(self, delivery: NewDelivery) -> None:
        """Queue a delivery; when its receiver's queue is full it is recorded as dropped."""
        target = delivery.target
        payload = slack_body(delivery.alert, self.clock_ms()) if target.format == "slack" else delivery.body
        self._enqueue(_Job(delivery, orjson.dumps(payload)))

    def _lane(self, url: str) -> _Lane:
        lane = self._lanes.get(url)
        if lane is None:
            lane = self._lanes[url] = _Lane(asyncio.Queue(maxsize=self.config.queue_size), [])
            lane.workers += [asyncio.create_task(self._work(url, lane), name=f"alert-delivery-{index}")
                             for index in range(self.config.concurrency)]
        return lane

    def _enqueue(self, job: _Job) -> None:
        try:
            self._lane(job.delivery.target.url).queue.put_nowait(job)
        except asyncio.QueueFull:
            self.dropped += 1
            log.warning("alert delivery queue of %s full (%d): dropped a delivery", job.delivery.target.url,
                        self.config.queue_size)
            task = asyncio.get_running_loop().create_task(
                self._record(job, "dropped", "the delivery queue was full"), name="alert-delivery-record")
            task.add_done_callback(self._records.discard)
            self._records.add(task)  # a strong reference until done: asyncio keeps only weak ones

    async def _work(self, url: str, lane: _Lane) -> None:
        """Deliver the lane's jobs; a lane idle for ``_IDLE_S`` ends (receivers come and go
        through the API), and the next delivery to that URL starts a new one."""
        try:
            while True:
                try:
                    job = await asyncio.wait_for(lane.queue.get(), _IDLE_S)
                except TimeoutError:
                    if lane.queue.empty():
                        return
                    continue
                try:
                    await self._attempt(job)
                except asyncio.CancelledError:
                    raise
                except Exception:  # one delivery's surprise must not stop the worker
                    log.exception("alert delivery to %s failed unexpectedly", job.delivery.target.url)
        finally:
            current = asyncio.current_task()
            if current in lane.workers:
                lane.workers.remove(current)
            if not lane.workers and self._lanes.get(url) is lane:
                del self._lanes[url]  # no await since the queue was seen empty: nothing was added

    async def _attempt(self, job: _Job) -> None:
        assert self._session is not None
        job.attempts += 1
        target = job.delivery.target
        headers = {"content-type": "application/json", "user-agent": "tollway-alerts",
                   SIGNATURE_HEADER: signature(target.secret, self.clock_ms() // 1000, job.body),
                   "x-tollway-delivery": job.delivery.id}
        status: int | None = None
        try:
            async with self._session.post(target.url, data=job.body, headers=headers, allow_redirects=False) as response:
                status = response.status
                text = (await response.text(errors="replace"))[:_ERROR_CHARS] if status >= 300 else ""
        except TimeoutError:
            error, retry = f"no answer within {self.timeout_s:g} s", True
        except aiohttp.ClientError as exc:
            error, retry = f"{type(exc).__name__}: {exc}"[:_ERROR_CHARS], True
        else:
            if 200 <= status < 300:
                await self._record(job, "delivered", None, status)
                return
            error = f"HTTP {status}" + (f": {text}" if text else "")
            retry = status >= 500 or status in _RETRIED_STATUSES
        if retry and job.attempts < self.config.max_attempts:
            await self._record(job, "retrying", error, status)
            self._retry_later(job)
        else:
            await self._record(job, "failed", error, status)

    def _retry_later(self, job: _Job) -> None:
        delay = min(self.config.max_backoff, self.config.retry_backoff * 2 ** (job.attempts - 1))

        def due() -> None:
            self._timers.discard(timer)
            self._enqueue(job)

        timer = asyncio.get_running_loop().call_later(delay, due)
        self._timers.add(timer)

    async def _record(self, job: _Job, status: str, error: str | None, response_status: int | None = None) -> None:
        try:
            await record_attempt(self.db, job.delivery.id, status=status, attempts=job.attempts,
                                 now=ms_to_datetime(self.clock_ms()), error=error, response_status=response_status)
        except Exception as exc:  # the log is best effort; the delivery itself went on
            log.warning("could not record an alert delivery (%s): %s", status, describe_error(exc))
