"""OpenAI's files and batches, governed (also Azure OpenAI's, where its adapter says so).

- `POST /v1/files` (``purpose=batch`` only): the JSONL file is read line by line, each line
  checked and rewritten for the provider (`batch_lines`), and uploaded once all passed
  (`batch_upload`); the gateway remembers who uploaded it and its worst case.
- `POST /v1/batches`: a file the same key uploaded, for the endpoint its lines name; its
  worst case is charged to every limit (`batch_submit`), the end user's that this request's
  ``x-tollway-user`` names too, or the batch is refused (429/402).
- `GET /v1/batches/{id}`, `POST /v1/batches/{id}/cancel`, `GET /v1/batches` (the key's own),
  `GET /v1/files/{id}`, `GET /v1/files/{id}/content`, `DELETE /v1/files/{id}`: only for the
  key that made the batch or file (a batch's output and error files included; another
  key's are "not found"), admitted on its request limits, logged.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import orjson

from tollway.asgi import JSON_HEADERS, Receive, Scope, Send, read_body, respond
from tollway.errors import GatewayError, bad_request
from tollway.governance.decisions import Denial
from tollway.governance.engine import RequestFacts, plan
from tollway.governance.names import model_key
from tollway.providers.adapters.base import OPENAI_BATCHES
from tollway.proxy.batch_gate import BatchGate, Caller, Refused, call, upload
from tollway.proxy.batch_lines import BatchTally, BatchTarget
from tollway.proxy.batch_submit import Submission, submit
from tollway.proxy.batch_upload import FileLine, FileStart, FormField, Spool, form_events, multipart_body, new_boundary
from tollway.proxy.end_user import batch_end_user, header_end_user
from tollway.proxy.outcome import Outcome
from tollway.proxy.passthrough import load_object, openai_error_from
from tollway.proxy.targets import Target
from tollway.store.batch_tables import BatchFile
from tollway.store.batches import batches_of_key, file_owner, find_batch, find_file, forget_file, note_files, save_file

FILES_PREFIX = "/v1/files/"
BATCHES_PREFIX = "/v1/batches/"
_LIST_LIMIT = 100


class OpenAIBatches:
    """The OpenAI files and batches routes."""

    def __init__(self, gate: BatchGate, first_poll_ms: int, wake: Callable[[], None] | None = None) -> None:
        self._gate = gate
        self._first_poll_ms = first_poll_ms
        self._wake = wake or (lambda: None)  # tells the follow-up a batch may have ended (a cancel)

    # -- POST /v1/files ------------------------------------------------------------------------

    async def upload_file(self, scope: Scope, receive: Receive, send: Send) -> None:
        gate = self._gate
        outcome = gate.outcome("files")
        async with gate.serving(outcome, send, anthropic=False):
            caller = await gate.identify(scope)
            spool = Spool()
            try:
                await self._upload(scope, receive, send, caller, spool, outcome)
            finally:
                spool.close()

    async def _upload(self, scope: Scope, receive: Receive, send: Send, caller: Caller, spool: Spool,
                      outcome: Outcome) -> None:
        gate, services = self._gate, self._gate.services
        tally = BatchTally(lambda model: gate.resolve(caller, model, OPENAI_BATCHES), services.pricing,
                           services.batch_prices, services.estimates, services.require_price)
        purpose, filename = None, "batch.jsonl"
        async for event in form_events(scope, receive, services.max_file_bytes, services.max_body_bytes):
            if isinstance(event, FileLine):
                spool.write(tally.openai_line(event.data) + b"\n")
                if tally.requests == 1:  # the model is known: may this key use it at all?
                    self._check_identity(caller, tally.target)
            elif isinstance(event, FormField) and event.name == "purpose":
                purpose = event.value
                _check_purpose(purpose, final=False)
            elif isinstance(event, FileStart):
                filename = event.filename
        _check_purpose(purpose, final=True)
        if tally.target is None or tally.endpoint is None:
            raise bad_request("the file has no requests: a batch file holds one JSON request per line", "file")
        target = tally.target
        async with gate.operation(caller, target.target.provider, target.target.model, outcome) as admission:
            key = gate.provider_key(target.provider, target.target.model, allowed=admission.allowed_provider_keys)
            content_type, length, body = multipart_body(new_boundary(), filename, spool)
            headers = {**target.provider.headers(key), "Content-Type": content_type}
            url = target.provider.adapter.batch_url(target.provider.base_url, target.provider.settings, "/files")
            status, data, answer_type = await upload(target.provider, url, headers, body, length)
            created = load_object(data) if status < 300 else None
            if created is not None and isinstance(created.get("id"), str):
                await save_file(services.db, BatchFile(
                    id=created["id"], provider=target.target.provider, model=target.target.model,
                    endpoint=tally.endpoint, provider_key_id=key.id, virtual_key_id=admission.key_id,
                    lines=tally.requests, worst_tokens=tally.worst_tokens, worst_cost_nano=tally.worst_cost_nano))
            await _answer(send, status, data, answer_type, outcome, admission.headers)

    def _check_identity(self, caller: Caller, target: BatchTarget | None) -> None:
        """Refuse at once (before reading the rest of a large file) a key that may not use
        the file's provider or model: the identity checks, which need no counter."""
        assert target is not None
        facts = RequestFacts(target.target.provider, model_key(target.target.model), caller.key_hash, 0, 0)
        planned = plan(caller.snapshot, facts, now_ms=self._gate.services.clock_ms())
        if isinstance(planned, Denial):
            raise Refused(planned)

    # -- POST /v1/batches ----------------------------------------------------------------------

    async def create_batch(self, scope: Scope, receive: Receive, send: Send) -> None:
        gate = self._gate
        outcome = gate.outcome("batches")
        async with gate.serving(outcome, send, anthropic=False):
            body = load_object(await read_body(scope, receive, gate.services.max_body_bytes))
            if body is None:
                raise bad_request("the body must be a JSON object")
            caller = await gate.identify(scope)
            file_id = body.get("input_file_id")
            if not isinstance(file_id, str) or not file_id:
                raise bad_request("'input_file_id' is required", "input_file_id")
            uploaded = await find_file(gate.services.db, file_id)
            if uploaded is None or uploaded.virtual_key_id != caller.key_id:
                raise _no_such("File", file_id, "input_file_id")  # another key's file: as if unknown
            if body.get("endpoint") != uploaded.endpoint:
                raise bad_request(f"'endpoint' must be {uploaded.endpoint!r}, the url of every line of the file "
                                  "(the gateway charged the file as such)", "endpoint")
            provider = gate.services.providers.get(uploaded.provider)
            if provider is None:
                raise bad_request(f"provider {uploaded.provider!r} of this file is no longer configured", "input_file_id")
            target = BatchTarget(Target(uploaded.provider, uploaded.model), provider,
                                 provider.upstream_model(uploaded.model))
            # The end user is the create request's header: the lines' `user` were read at upload (another
            # request), and the gateway keeps no end user per file (docs/batches.md).
            end_user = batch_end_user(header_end_user(scope), (), caller.key, gate.limits_end_users(caller), None,
                                      "input_file_id")
            submission = Submission(OPENAI_BATCHES, target, uploaded.provider_key_id, uploaded.lines, uploaded.worst_tokens,
                                    uploaded.worst_cost_nano, file_id, end_user)
            key = gate.provider_key(provider, uploaded.model, uploaded.provider_key_id)
            url = provider.adapter.batch_url(provider.base_url, provider.settings, "/batches")
            raw = orjson.dumps(body)
            status, data, content_type = await submit(gate, caller, submission, outcome,
                                                      lambda: call(provider, "POST", url, key, raw), self._first_poll_ms)
            await _answer(send, status, data, content_type, outcome, [])

    # -- GET /v1/batches -----------------------------------------------------------------------

    async def list_batches(self, scope: Scope, receive: Receive, send: Send) -> None:
        gate = self._gate
        outcome = gate.outcome("batches.list")
        async with gate.serving(outcome, send, anthropic=False):
            await read_body(scope, receive, gate.services.max_body_bytes)
            caller = await gate.identify(scope)
            rows = sorted(await batches_of_key(gate.services.db, caller.key_id, OPENAI_BATCHES),
                          key=lambda row: (row.created_at, row.id), reverse=True)
            page, more = _page(rows, scope)
            provider, model = (rows[0].provider, rows[0].model) if rows else gate.listing_target(caller, OPENAI_BATCHES)
            async with gate.operation(caller, provider, model, outcome) as admission:
                found = await asyncio.gather(*(self._fetch(row.provider, row.model, row.provider_key_id,
                                                           f"/batches/{row.id}") for row in page))
                data = [item for item in found if item is not None]
                listing = {"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
                           "last_id": data[-1]["id"] if data else None, "has_more": more}
                await respond(send, 200, orjson.dumps(listing), JSON_HEADERS + admission.headers)

    async def _fetch(self, provider_name: str, model: str, key_id: str, path: str) -> dict[str, Any] | None:
        provider = self._gate.services.providers.get(provider_name)
        if provider is None:
            return None
        key = self._gate.provider_key(provider, model, key_id)
        status, data, _ = await call(provider, "GET", provider.adapter.batch_url(provider.base_url, provider.settings,
                                                                                  path), key)
        return load_object(data) if status < 300 else None

    # -- /v1/batches/{id}, /v1/batches/{id}/cancel, /v1/files/{id}, /v1/files/{id}/content -------------

    async def by_id(self, scope: Scope, receive: Receive, send: Send) -> None:
        path, method = scope["path"], scope["method"]
        files = path.startswith(FILES_PREFIX)
        item_id, _, operation = path[len(FILES_PREFIX if files else BATCHES_PREFIX):].partition("/")
        route = _ROUTES.get((files, method, operation))
        gate = self._gate
        outcome = gate.outcome(route or ("files" if files else "batches"))
        async with gate.serving(outcome, send, anthropic=False):
            if route is None or not item_id:
                raise _no_route(method, path)
            await read_body(scope, receive, gate.services.max_body_bytes)  # drained: nothing in it is forwarded
            caller = await gate.identify(scope)
            owner = await self._owner(files, item_id)
            if owner is None:
                raise _no_such("File" if files else "Batch", item_id)
            key_id, provider_name, model, provider_key_id = owner
            async with gate.operation(caller, provider_name, model, outcome) as admission:
                if key_id != caller.key_id:
                    raise _no_such("File" if files else "Batch", item_id)
                provider = gate.services.providers.get(provider_name)
                if provider is None:
                    raise bad_request(f"provider {provider_name!r} is no longer configured")
                key = gate.provider_key(provider, model, provider_key_id)
                suffix = f"/{operation}" if operation else ""
                url = provider.adapter.batch_url(provider.base_url, provider.settings,
                                                 f"/{'files' if files else 'batches'}/{item_id}{suffix}")
                status, data, content_type = await call(provider, method, url, key, b"" if method == "POST" else None)
                await self._after(files, method, item_id, status, data)
                await _answer(send, status, data, content_type, outcome, admission.headers)

    async def _owner(self, files: bool, item_id: str) -> tuple[str | None, str, str, str] | None:
        db = self._gate.services.db
        if files:
            return await file_owner(db, item_id)
        row = await find_batch(db, item_id)
        if row is None or row.api != OPENAI_BATCHES:
            return None
        return row.virtual_key_id, row.provider, row.model, row.provider_key_id

    async def _after(self, files: bool, method: str, item_id: str, status: int, data: bytes) -> None:
        db = self._gate.services.db
        if status >= 300:
            return
        if files:
            if method == "DELETE":
                await forget_file(db, item_id)
            return
        batch = load_object(data) or {}
        output, error = batch.get("output_file_id"), batch.get("error_file_id")
        await note_files(db, item_id, output if isinstance(output, str) else None,
                         error if isinstance(error, str) else None)
        if method == "POST":
            self._wake()


_ROUTES = {(True, "GET", ""): "files.get", (True, "GET", "content"): "files.content",
           (True, "DELETE", ""): "files.delete", (False, "GET", ""): "batches.get",
           (False, "POST", "cancel"): "batches.cancel"}


def _check_purpose(purpose: str | None, final: bool) -> None:
    if purpose is None and not final:
        return
    if purpose != "batch":
        raise bad_request(f"'purpose' must be \"batch\" (got {purpose!r}): this gateway takes files for batches only",
                          "purpose")


def _page(rows: list[Any], scope: Scope) -> tuple[list[Any], bool]:
    query = dict(part.split("=", 1) for part in scope.get("query_string", b"").decode("latin-1").split("&")
                 if "=" in part)
    try:
        limit = max(1, min(_LIST_LIMIT, int(query.get("limit", "20"))))
    except ValueError:
        raise bad_request("'limit' must be a number from 1 to 100", "limit") from None
    after = query.get("after")
    if after:
        ids = [row.id for row in rows]
        rows = rows[ids.index(after) + 1:] if after in ids else []
    return rows[:limit], len(rows) > limit


async def _answer(send: Send, status: int, data: bytes, content_type: str, outcome: Outcome,
                  headers: list[tuple[bytes, bytes]]) -> None:
    headers = headers + [(b"x-request-id", outcome.request_id.encode())]
    outcome.status = status
    if status >= 400:
        outcome.error = outcome.error or f"upstream answered {status}"
        await respond(send, status, openai_error_from(status, data), JSON_HEADERS + headers)
        return
    await respond(send, status, data, [(b"content-type", content_type.encode("latin-1"))] + headers)


def _no_such(kind: str, item_id: str, param: str | None = None) -> GatewayError:
    return GatewayError(404, "invalid_request_error", f"No such {kind} object: {item_id!r} (this gateway serves the "
                        "files and batches it passed through, to the key that made them)", param=param,
                        code="not_found")


def _no_route(method: str, path: str) -> GatewayError:
    return GatewayError(404, "invalid_request_error", f"no route {method} {path}; the batch routes are GET and DELETE "
                        f"{FILES_PREFIX}{{id}}, GET {FILES_PREFIX}{{id}}/content, GET {BATCHES_PREFIX}{{id}} and "
                        f"POST {BATCHES_PREFIX}{{id}}/cancel", code="not_found")
