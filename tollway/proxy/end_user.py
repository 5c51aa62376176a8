"""Finding the end user a request names (SPEC §8 "end user").

An application behind a virtual key names the person it serves in the ``x-tollway-user``
header, the OpenAI ``user`` field (chat, completions, embeddings, responses, image
generations and edits) or the Anthropic ``metadata.user_id``; the key's ``end_user``
settings say which of these it trusts and whether a request must name one. A request whose
trusted places name two different end users is refused rather than silently counted
against either. APIs without such a field (audio, moderations, Google's own route, the
stored-response and batch operations) take the header only.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from tollway.asgi import Scope
from tollway.errors import GatewayError, bad_request
from tollway.governance.end_users import MAX_END_USER_LENGTH
from tollway.governance.model import ANY_END_USER_SOURCE, EndUserSource, VirtualKeyPolicy
from tollway.providers.client import Api

HEADER = b"x-tollway-user"
_HEADER_NAME = HEADER.decode()
# The body field that names the end user, by API ("metadata.user_id": Anthropic's).
_BODY_FIELD = {Api.CHAT: "user", Api.COMPLETIONS: "user", Api.EMBEDDINGS: "user", Api.RESPONSES: "user",
               Api.IMAGES_GENERATIONS: "user", Api.IMAGES_EDITS: "user",
               Api.MESSAGES: "metadata.user_id", Api.COUNT_TOKENS: "metadata.user_id"}


def header_end_user(scope: Scope) -> bytes | None:
    """The raw ``x-tollway-user`` header, or None."""
    for name, value in scope["headers"]:
        if name == HEADER:
            return value
    return None


def end_user_of(api: Api, body: Mapping[str, Any], header: bytes | None, key: VirtualKeyPolicy | None) -> str | None:
    """The end user the request names in the places ``key`` trusts (all, without a key),
    or None; a 400 naming the field when a value is not a usable id, when two trusted
    places disagree, or when the key requires an end user and none is named."""
    return _named(_BODY_FIELD.get(api), body, header, key, api.value)


def end_user_in_header(header: bytes | None, key: VirtualKeyPolicy | None, what: str) -> str | None:
    """`end_user_of` for a request whose body has no end-user field (``what`` names it in
    a refusal: a stored-response or batch operation)."""
    return _named(None, _NO_BODY, header, key, what)


_NO_BODY: Mapping[str, Any] = {}


def _named(field: str | None, body: Mapping[str, Any], header: bytes | None, key: VirtualKeyPolicy | None,
           what: str) -> str | None:
    source = key.end_user if key is not None else ANY_END_USER_SOURCE
    named = _from_header(header) if source.header and header is not None else None
    if source.body and field is not None:
        in_body = _from_body(body, field)
        if in_body is not None:
            if named is not None and named != in_body:
                raise bad_request(f"the {_HEADER_NAME} header and '{field}' name different end users; "
                                  "send one, or the same in both", field)
            named = in_body
    if named is None and source.required:
        raise _required(source, key, field, what)
    return named


def end_user_in_body(api: Api, body: Mapping[str, Any], key: VirtualKeyPolicy | None) -> str | None:
    """The end user one request of a batch names in its body, where ``key`` trusts the body
    (never required of one request: the batch as a whole must name one, `batch_end_user`)."""
    source = key.end_user if key is not None else ANY_END_USER_SOURCE
    field = _BODY_FIELD.get(api)
    return _from_body(body, field) if source.body and field is not None else None


def batch_end_user(header: bytes | None, in_requests: Collection[str], key: VirtualKeyPolicy | None,
                   limited: bool, body_field: str | None, param: str) -> str | None:
    """The one end user a batch is charged to: the header's, or the one its requests name
    (`end_user_in_body`), which must agree. Requests naming several end users are a 400
    where their limits apply (``limited``: a batch is charged to one end user's counters);
    elsewhere the batch is simply logged without one. Required like any request
    (``body_field``: where its requests may name one, None when they may not)."""
    source = key.end_user if key is not None else ANY_END_USER_SOURCE
    named = {_from_header(header)} if source.header and header is not None else set()
    named.update(in_requests)
    if len(named) > 1:
        if limited:
            shown = ", ".join(repr(name) for name in sorted(named)[:3]) + (", ..." if len(named) > 3 else "")
            raise bad_request(f"the batch names {len(named)} end users ({shown}): a batch is charged to one end user's "
                              "limits, so send one batch per end user", param)
        return None
    if not named and source.required:
        raise _required(source, key, body_field, "batch")
    return next(iter(named), None)


def _from_header(raw: bytes) -> str:
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        raise bad_request(f"the {_HEADER_NAME} header must be UTF-8 text", _HEADER_NAME) from None
    return _checked(text.strip(), f"the {_HEADER_NAME} header", _HEADER_NAME)


def _from_body(body: Mapping[str, Any], field: str) -> str | None:
    if field == "user":
        value = body.get("user")
    else:
        metadata = body.get("metadata")
        if metadata is None:
            return None
        if not isinstance(metadata, dict):
            raise bad_request("'metadata' must be an object", "metadata")
        value = metadata.get("user_id")
    if value is None:
        return None
    if not isinstance(value, str):
        raise bad_request(f"'{field}' must be a string (the end user's id)", field)
    return _checked(value.strip(), f"'{field}'", field)


def _checked(value: str, where: str, field: str) -> str:
    """An end user id: 1 to `MAX_END_USER_LENGTH` printable characters."""
    if not value:
        raise bad_request(f"{where} must not be empty (the end user's id)", field)
    if len(value) > MAX_END_USER_LENGTH:
        raise bad_request(f"{where} is longer than {MAX_END_USER_LENGTH} characters", field)
    if not value.isprintable():
        raise bad_request(f"{where} contains control or invisible characters", field)
    return value


def _required(source: EndUserSource, key: VirtualKeyPolicy | None, field: str | None, what: str) -> GatewayError:
    name = key.name if key is not None else ""
    field = field if source.body else None
    places = ([f"the {_HEADER_NAME} header"] if source.header else []) + ([f"the '{field}' field"] if field else [])
    if not places:  # the key trusts only the body, and this request has no end-user field in it
        return bad_request(f"virtual key '{name}' requires an end user and trusts only the request body to name one, "
                           f"but {what} requests have no end-user field: add 'header' to the key's end_user.source "
                           f"and send the {_HEADER_NAME} header", _HEADER_NAME)
    return bad_request(f"virtual key '{name}' requires an end user: name one in {' or '.join(places)}",
                       field if field is not None else _HEADER_NAME)
