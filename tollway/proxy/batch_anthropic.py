"""Anthropic's message batches, governed.

- `POST /v1/messages/batches`: the requests come inline; each is checked and rewritten for
  the provider (`batch_lines`), and the batch's worst case is charged to every limit
  (`batch_submit`), its end user's too (the header's, or the one its requests'
  ``metadata.user_id`` name), or the batch refused (429/402, Anthropic's error shape). The body is read
  whole, up to ``batches.max_file_bytes``.
- `GET /v1/messages/batches/{id}`, `.../results`, `POST .../cancel`, `DELETE ...`, and
  `GET /v1/messages/batches` (the key's own): only for the key that made the batch (another
  key's is "not found"), admitted on its request limits, logged. A batch's ``results_url``
  is rewritten to the gateway's own route, so that SDKs fetch results through it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import orjson

from tollway.asgi import JSON_HEADERS, Receive, Scope, Send, header, read_body, respond
from tollway.errors import GatewayError, bad_request
from tollway.providers.adapters.base import MESSAGE_BATCHES
from tollway.providers.client import ProviderClient
from tollway.proxy.batch_gate import BatchGate, call
from tollway.proxy.batch_lines import BatchTally
from tollway.proxy.batch_submit import Submission, submit
from tollway.proxy.end_user import batch_end_user, end_user_in_body, header_end_user
from tollway.proxy.outcome import Outcome
from tollway.proxy.passthrough import load_object
from tollway.store.batches import batches_of_key, find_batch

PATH = "/v1/messages/batches"
PREFIX = PATH + "/"
_LIST_LIMIT = 1000
_ROUTES = {("GET", ""): "batches.get", ("GET", "results"): "batches.results", ("POST", "cancel"): "batches.cancel",
           ("DELETE", ""): "batches.delete"}


class AnthropicBatches:
    """The Anthropic message batch routes."""

    def __init__(self, gate: BatchGate, first_poll_ms: int, wake: Callable[[], None] | None = None) -> None:
        self._gate = gate
        self._first_poll_ms = first_poll_ms
        self._wake = wake or (lambda: None)

    async def create(self, scope: Scope, receive: Receive, send: Send) -> None:
        gate, services = self._gate, self._gate.services
        outcome = gate.outcome("batches")
        async with gate.serving(outcome, send, anthropic=True):
            body = load_object(await read_body(scope, receive, services.max_file_bytes))
            if body is None or not isinstance(body.get("requests"), list) or not body["requests"]:
                raise bad_request("'requests' is required: a list of {custom_id, params}", "requests")
            caller = await gate.identify(scope)
            tally = BatchTally(lambda model: gate.resolve(caller, model, MESSAGE_BATCHES), services.pricing,
                               services.batch_prices, services.estimates, services.require_price,
                               end_user_of=lambda api, params: end_user_in_body(api, params, caller.key))
            requests = [tally.anthropic_request(request) for request in body["requests"]]
            target = tally.target
            assert target is not None
            end_user = batch_end_user(header_end_user(scope), tally.end_users, caller.key, gate.limits_end_users(caller),
                                      "params.metadata.user_id", "requests")
            key = gate.provider_key(target.provider, target.target.model)
            submission = Submission(MESSAGE_BATCHES, target, key.id, tally.requests, tally.worst_tokens,
                                    tally.worst_cost_nano, end_user=end_user)
            url = _url(target.provider, PATH)
            raw = orjson.dumps({**body, "requests": requests})
            status, data, content_type = await submit(gate, caller, submission, outcome,
                                                      lambda: call(target.provider, "POST", url, key, raw),
                                                      self._first_poll_ms)
            await _answer(send, status, _own_results_url(scope, data), content_type, outcome, [])

    async def list(self, scope: Scope, receive: Receive, send: Send) -> None:
        gate = self._gate
        outcome = gate.outcome("batches.list")
        async with gate.serving(outcome, send, anthropic=True):
            await read_body(scope, receive, gate.services.max_body_bytes)
            caller = await gate.identify(scope)
            rows = sorted(await batches_of_key(gate.services.db, caller.key_id, MESSAGE_BATCHES),
                          key=lambda row: (row.created_at, row.id), reverse=True)
            limit = _limit(scope)
            page = rows[:limit]
            provider, model = (rows[0].provider, rows[0].model) if rows else gate.listing_target(caller, MESSAGE_BATCHES)
            async with gate.operation(caller, provider, model, outcome) as admission:
                found = await asyncio.gather(*(self._fetch(scope, row.provider, row.model, row.provider_key_id, row.id)
                                               for row in page))
                data = [item for item in found if item is not None]
                listing = {"data": data, "has_more": len(rows) > limit,
                           "first_id": data[0]["id"] if data else None, "last_id": data[-1]["id"] if data else None}
                await respond(send, 200, orjson.dumps(listing), JSON_HEADERS + admission.headers)

    async def _fetch(self, scope: Scope, provider_name: str, model: str, key_id: str,
                     batch_id: str) -> dict[str, Any] | None:
        provider = self._gate.services.providers.get(provider_name)
        if provider is None:
            return None
        key = self._gate.provider_key(provider, model, key_id)
        status, data, _ = await call(provider, "GET", _url(provider, f"{PATH}/{batch_id}"), key)
        return load_object(_own_results_url(scope, data)) if status < 300 else None

    async def by_id(self, scope: Scope, receive: Receive, send: Send) -> None:
        method, path = scope["method"], scope["path"]
        batch_id, _, operation = path[len(PREFIX):].partition("/")
        route = _ROUTES.get((method, operation))
        gate = self._gate
        outcome = gate.outcome(route or "batches")
        async with gate.serving(outcome, send, anthropic=True):
            if route is None or not batch_id:
                raise GatewayError(404, "not_found_error", f"no route {method} {path}; the message batch routes are "
                                   f"GET and DELETE {PREFIX}{{id}}, GET {PREFIX}{{id}}/results and POST "
                                   f"{PREFIX}{{id}}/cancel", code="not_found")
            await read_body(scope, receive, gate.services.max_body_bytes)  # drained: nothing in it is forwarded
            caller = await gate.identify(scope)
            row = await find_batch(gate.services.db, batch_id)
            if row is None or row.api != MESSAGE_BATCHES:
                raise _no_such(batch_id)
            async with gate.operation(caller, row.provider, row.model, outcome) as admission:
                if row.virtual_key_id != caller.key_id:
                    raise _no_such(batch_id)
                provider = gate.services.providers.get(row.provider)
                if provider is None:
                    raise bad_request(f"provider {row.provider!r} is no longer configured")
                key = gate.provider_key(provider, row.model, row.provider_key_id)
                url = _url(provider, f"{PATH}/{batch_id}" + (f"/{operation}" if operation else ""))
                status, data, content_type = await call(provider, method, url, key, b"" if method == "POST" else None)
                if method == "POST" and status < 300:
                    self._wake()
                if operation != "results":
                    data = _own_results_url(scope, data)
                await _answer(send, status, data, content_type, outcome, admission.headers)


def _url(provider: ProviderClient, path: str) -> str:
    url: str = provider.adapter.batch_url(provider.base_url, provider.settings, path)
    return url


def _own_results_url(scope: Scope, data: bytes) -> bytes:
    """The batch with its ``results_url`` on this gateway (the SDKs fetch it as given)."""
    batch = load_object(data)
    if batch is None or not isinstance(batch.get("results_url"), str) or not isinstance(batch.get("id"), str):
        return data
    host = (header(scope, b"host") or b"").decode("latin-1")
    if not host:
        server = scope.get("server") or ("127.0.0.1", 80)
        host = f"{server[0]}:{server[1]}"
    scheme = str(scope.get("scheme", "http"))
    batch["results_url"] = f"{scheme}://{host}{PREFIX}{batch['id']}/results"
    return orjson.dumps(batch)


def _limit(scope: Scope) -> int:
    for part in scope.get("query_string", b"").decode("latin-1").split("&"):
        name, _, value = part.partition("=")
        if name == "limit":
            try:
                return max(1, min(_LIST_LIMIT, int(value)))
            except ValueError:
                raise bad_request("'limit' must be a number from 1 to 1000", "limit") from None
    return 20


async def _answer(send: Send, status: int, data: bytes, content_type: str, outcome: Outcome,
                  headers: list[tuple[bytes, bytes]]) -> None:
    outcome.status = status
    headers = headers + [(b"x-request-id", outcome.request_id.encode())]
    if status >= 400:
        outcome.error = outcome.error or f"upstream answered {status}"
        await respond(send, status, data, JSON_HEADERS + headers)
        return
    await respond(send, status, data, [(b"content-type", content_type.encode("latin-1"))] + headers)


def _no_such(batch_id: str) -> GatewayError:
    return GatewayError(404, "not_found_error", f"No message batch with id {batch_id!r} (this gateway serves the "
                        "batches it passed through, to the key that made them)", code="not_found")
