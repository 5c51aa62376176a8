"""The Responses API routes around the pipeline.

`POST /v1/responses` goes through `Proxy.handle` like every model request; on the way the
id of a response that a provider stored is noted (with the provider and the virtual key)
in the `ResponseDirectory`, a `previous_response_id` another key made is refused, and so is
a background response without `max_output_tokens` (see `_uncapped_background`).

`GET`/`DELETE /v1/responses/{id}`, `POST /v1/responses/{id}/cancel` and
`GET /v1/responses/{id}/input_items` go to the provider that made the response, governed
like the rest: the key is admitted for that provider and model (identity, request limits;
no tokens or money reserved, nothing charged; the end user's limits too: the header's end
user, else the one the response was made for), only the key that made the response may
reach it, and the request is logged.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Mapping

from tollway.asgi import (
    JSON_HEADERS,
    ClientGone,
    Message,
    Receive,
    Scope,
    Send,
    read_body,
    replay,
    respond,
    respond_error,
)
from tollway.denials import error_body
from tollway.errors import (
    GatewayError,
    bad_request,
    governance_unavailable,
    upstream_timeout,
    upstream_unreachable,
)
from tollway.governance.counters.base import CounterUnavailable
from tollway.governance.decisions import denial_headers
from tollway.governance.enforcer import Admission, Enforcer
from tollway.governance.engine import RequestFacts, hash_key
from tollway.governance.model import ANY_END_USER_SOURCE, VirtualKeyPolicy
from tollway.providers.client import Api, NoUsableKey, ProviderClient, ProviderKey
from tollway.providers.http import UpstreamHTTPError, UpstreamResponse
from tollway.providers.sse import SSEParser
from tollway.proxy.auth import presented_key
from tollway.proxy.end_user import end_user_in_header, header_end_user
from tollway.proxy.outcome import Outcome, OutcomeSink, answered
from tollway.proxy.passthrough import load_object, openai_error_from
from tollway.proxy.pipeline import Proxy
from tollway.proxy.policy_source import PolicySource
from tollway.proxy.request_tags import request_tags
from tollway.proxy.response_directory import ResponseDirectory, ResponseOwner
from tollway.proxy.responses_exchanges import passes_through

PREFIX = "/v1/responses/"
_OPERATIONS = {("GET", ""), ("DELETE", ""), ("POST", "cancel"), ("GET", "input_items")}
_SNIFF_LIMIT = 65536  # bytes of a stream read for the response id of its first event


class ResponsesRoute:
    """Serves `/v1/responses` and the stored-response routes under it."""

    def __init__(self, *, proxy: Proxy, providers: Mapping[str, ProviderClient], enforcer: Enforcer,
                 snapshot: PolicySource, sink: OutcomeSink, max_body_bytes: int,
                 directory: ResponseDirectory | None = None) -> None:
        self._proxy = proxy
        self._providers = providers
        self._enforcer = enforcer
        self._snapshot = snapshot
        self._sink = sink
        self._max_body = max_body_bytes
        self.directory = directory or ResponseDirectory()
        self._ids = itertools.count(1)
        self._id_prefix = "r" + os.urandom(4).hex()

    # -- POST /v1/responses ----------------------------------------------------------------

    async def create(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            raw = await read_body(scope, receive, self._max_body)
        except GatewayError as err:
            await self._refuse(send, err)
            return
        except ClientGone:
            return
        key_id = await self._key_id(scope)
        refusal = self._previous_refusal(raw, key_id) or _uncapped_background(raw)
        if refusal is not None:
            await self._refuse(send, refusal, key_id)
            return
        sniffer = _IdSniffer(send)
        outcome = await self._proxy.handle(Api.RESPONSES, scope, replay(raw, receive), sniffer.send)
        provider = self._providers.get(outcome.provider)
        if sniffer.response_id and provider is not None and passes_through(provider):
            self.directory.note(sniffer.response_id, ResponseOwner(outcome.provider, outcome.model, outcome.key_id,
                                                                   outcome.end_user))

    async def _refuse(self, send: Send, error: GatewayError, key_id: str | None = None) -> None:
        """Answer an error found before the pipeline, and log it like the pipeline would."""
        outcome = self._outcome()
        outcome.status, outcome.error, outcome.key_id = error.status, error.message, key_id
        await respond_error(send, error)
        self._sink.record(outcome)

    def _outcome(self) -> Outcome:
        return Outcome(f"{self._id_prefix}-{next(self._ids)}", Api.RESPONSES.value, self._enforcer.clock_ms())

    async def _key_id(self, scope: Scope) -> str | None:
        value = presented_key(scope)
        key_hash = hash_key(value) if value else None
        key = (await self._snapshot.for_key(key_hash)).keys_by_hash.get(key_hash) if key_hash else None
        return key.id if key is not None else None

    def _previous_refusal(self, raw: bytes, key_id: str | None) -> GatewayError | None:
        """A 404 for a ``previous_response_id`` that another key made (as if unknown)."""
        if b'"previous_response_id"' not in raw:
            return None
        body = load_object(raw) or {}
        previous = body.get("previous_response_id")
        if not isinstance(previous, str):
            return None
        owner = self.directory.get(previous)
        if owner is None or owner.key_id == key_id:
            return None
        return _unknown(previous, "previous_response_id")

    # -- GET/DELETE /v1/responses/{id}, POST .../cancel, GET .../input_items ---------------------

    async def stored(self, scope: Scope, receive: Receive, send: Send) -> None:
        outcome = self._outcome()
        async with answered(outcome, self._sink, send):
            await self._serve_stored(scope, receive, send, outcome)

    async def _serve_stored(self, scope: Scope, receive: Receive, send: Send, outcome: Outcome) -> None:
        method = scope["method"]
        response_id, _, operation = scope["path"][len(PREFIX):].partition("/")
        outcome.api = f"{Api.RESPONSES.value}.{operation or method.lower()}"  # e.g. responses.get, responses.cancel
        if not response_id or (method, operation) not in _OPERATIONS:
            raise GatewayError(404 if operation not in ("", "cancel", "input_items") else 405, "invalid_request_error",
                               f"no route {method} {scope['path']}; the stored-response routes are GET and DELETE "
                               f"{PREFIX}{{id}}, POST {PREFIX}{{id}}/cancel and GET {PREFIX}{{id}}/input_items",
                               code="not_found")
        await read_body(scope, receive, self._max_body)  # drained: nothing in it is forwarded
        owner = self.directory.get(response_id)
        if owner is None:
            raise _unknown(response_id)
        value = presented_key(scope)
        key_hash = hash_key(value) if value else None
        snapshot = await self._snapshot.for_key(key_hash)
        key = snapshot.keys_by_hash.get(key_hash) if key_hash else None
        outcome.end_user = end_user = _operating_end_user(header_end_user(scope), key, owner, outcome.api)
        facts = RequestFacts(owner.provider, owner.model, key_hash, 0, 0, tags=request_tags(scope), end_user=end_user)
        try:
            admission = await self._enforcer.admit(snapshot, facts)
            if admission.queue is not None:  # no in-flight slot free: wait for one, within queue_timeout_ms
                admission = await self._enforcer.wait_for_slot(self._snapshot, facts, admission)
        except CounterUnavailable as exc:
            raise governance_unavailable(str(exc)) from None
        outcome.provider, outcome.model = owner.provider, owner.model
        outcome.key_id, outcome.team_id, outcome.customer_id = admission.key_id, admission.team_id, admission.customer_id
        outcome.would_deny, outcome.tags = admission.would_deny, admission.tags
        if admission.denial is not None:
            outcome.status, outcome.decision = admission.denial.decision.status, admission.denial.decision.value
            outcome.denied_scope, outcome.error = admission.denial.scope, admission.denial.message
            await respond(send, admission.denial.decision.status, error_body(admission.denial, anthropic=False),
                          JSON_HEADERS + denial_headers(admission.denial))
            return
        try:
            if admission.key_id != owner.key_id:
                raise _unknown(response_id)
            status = await self._forward(scope, send, owner, response_id, operation, admission, outcome)
            await self._enforcer.settle(admission.reservation, 0, 0)
            if method == "DELETE" and status < 300:
                self.directory.forget(response_id)
        finally:
            await self._enforcer.release(admission.reservation)

    async def _forward(self, scope: Scope, send: Send, owner: ResponseOwner, response_id: str, operation: str,
                       admission: Admission, outcome: Outcome) -> int:
        provider = self._providers[owner.provider]
        try:
            key = provider.pick_key(owner.model, admission.allowed_provider_keys)
        except NoUsableKey as exc:
            raise bad_request(str(exc)) from None
        url = provider.responses_url(f"/{response_id}" + (f"/{operation}" if operation else ""))
        if query := scope.get("query_string", b"").decode("latin-1"):
            url += ("&" if "?" in url else "?") + query
        method = scope["method"]
        data, status, content_type = await _exchange(provider, method, url, key, b"" if method == "POST" else None)
        outcome.status = status
        headers = admission.headers + [(b"x-request-id", outcome.request_id.encode())]
        if status >= 400:
            outcome.error = f"upstream answered {status}"
            await respond(send, status, openai_error_from(status, data), JSON_HEADERS + headers)
        else:  # a retrieve with ?stream=true is an event stream, relayed whole once the provider ends it
            await respond(send, status, data, [(b"content-type", content_type.encode("latin-1"))] + headers)
        return status


async def _exchange(provider: ProviderClient, method: str, url: str, key: ProviderKey,
                    body: bytes | None) -> tuple[bytes, int, str]:
    """One request to the provider: its body, status and content type; failures as the
    gateway's 502/504."""
    response: UpstreamResponse | None = None
    try:
        response = await provider.send(method, url, key, body)
        data = await response.read()
    except TimeoutError:  # the client's UpstreamTimeout is one
        if response is not None:
            response.close()
        raise upstream_timeout(provider.name) from None
    except UpstreamHTTPError as exc:
        if response is not None:
            response.close()
        raise upstream_unreachable(provider.name, str(exc) or type(exc).__name__) from None
    response.release()
    return data, response.status, response.headers.get("content-type") or "application/json"


def _operating_end_user(header: bytes | None, key: VirtualKeyPolicy | None, owner: ResponseOwner,
                        what: str) -> str | None:
    """Whom an operation on a stored response counts against: the end user the header names
    (where the key trusts it), else the one the response was made for; a key that requires
    an end user refuses the operation only when neither names one."""
    source = key.end_user if key is not None else ANY_END_USER_SOURCE
    if owner.end_user is not None and not (source.header and header is not None):
        return owner.end_user
    return end_user_in_header(header, key, what)


def _uncapped_background(raw: bytes) -> GatewayError | None:
    """A 400 for a background response without ``max_output_tokens``.

    The provider answers a background request at once, without usage (it reports usage
    only when the response finishes, later, to whoever asks), so the gateway charges such
    a response its reservation: the prompt estimate plus ``max_output_tokens``, the most
    it can produce. Without a cap nothing would bound its cost.
    """
    if b'"background"' not in raw:
        return None
    body = load_object(raw) or {}
    if body.get("background") is not True or body.get("stream") is True or body.get("max_output_tokens") is not None:
        return None  # a streamed one reports its usage at its end, like any stream
    return bad_request("'background': true needs 'max_output_tokens': the provider reports a background response's "
                       "usage only when it finishes, so the gateway charges the most it can produce", "background")


def _unknown(response_id: str, param: str | None = None) -> GatewayError:
    return GatewayError(404, "invalid_request_error",
                        f"Response with id {response_id!r} not found (this gateway routes only the responses it "
                        "passed through, for the key that made them)", param=param, code="not_found")


class _IdSniffer:
    """Wraps ``send`` to read the id of a successful response: the body's top-level id,
    or for a stream the response id of its first event (``response.created``)."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self._ok = False
        self._stream = False
        self._head = b""
        self._done = False
        self.response_id: str | None = None

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self._ok = message["status"] == 200
            self._stream = any(k == b"content-type" and v.startswith(b"text/event-stream")
                               for k, v in message.get("headers", ()))
        elif self._ok and not self._done:
            self._read(message.get("body", b""))
        await self._send(message)

    def _read(self, body: bytes) -> None:
        if not self._stream:
            self._done = True
            self.response_id = _str((load_object(body) or {}).get("id"))
            return
        self._head += body
        if b"\n\n" not in self._head and len(self._head) < _SNIFF_LIMIT:
            return
        self._done = True
        events = SSEParser().feed(self._head)
        first = load_object(events[0].data) if events else None
        response = first.get("response") if first else None
        if isinstance(response, dict):
            self.response_id = _str(response.get("id"))


def _str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None
