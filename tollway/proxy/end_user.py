"""Finding the end user a request names (SPEC §8 "end user").

An application behind a virtual key names the person it serves in the ``x-tollway-user``
header, the OpenAI ``user`` field (chat, completions, embeddings, responses) or the
Anthropic ``metadata.user_id``; the key's ``end_user`` settings say which of these it
trusts and whether a request must name one. A request whose trusted places name two
different end users is refused rather than silently counted against either.
"""

from __future__ import annotations

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
               Api.MESSAGES: "metadata.user_id", Api.COUNT_TOKENS: "metadata.user_id"}


def header_end_user(scope: Scope) -> bytes | None:
    """The raw ``x-tollway-user`` header, or None."""
    for name, value in scope["headers"]:
        if name == HEADER:
            return value
    return None


def end_user_of(api: Api, body: dict[str, Any], header: bytes | None, key: VirtualKeyPolicy | None) -> str | None:
    """The end user the request names in the places ``key`` trusts (all, without a key),
    or None; a 400 naming the field when a value is not a usable id, when two trusted
    places disagree, or when the key requires an end user and none is named."""
    source = key.end_user if key is not None else ANY_END_USER_SOURCE
    named = _from_header(header) if source.header and header is not None else None
    if source.body:
        field = _BODY_FIELD.get(api)
        in_body = _from_body(body, field) if field is not None else None
        if in_body is not None:
            if named is not None and named != in_body:
                raise bad_request(f"the {_HEADER_NAME} header and '{field}' name different end users; "
                                  "send one, or the same in both", field)
            named = in_body
    if named is None and source.required:
        raise _required(source, key, api)
    return named


def _from_header(raw: bytes) -> str:
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        raise bad_request(f"the {_HEADER_NAME} header must be UTF-8 text", _HEADER_NAME) from None
    return _checked(text.strip(), f"the {_HEADER_NAME} header", _HEADER_NAME)


def _from_body(body: dict[str, Any], field: str) -> str | None:
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


def _required(source: EndUserSource, key: VirtualKeyPolicy | None, api: Api) -> GatewayError:
    places = []
    if source.header:
        places.append(f"the {_HEADER_NAME} header")
    field = _BODY_FIELD.get(api)
    if source.body and field is not None:
        places.append(f"the '{field}' field")
    name = key.name if key is not None else ""
    where = " or ".join(places) or "a place this API has"
    return bad_request(f"virtual key '{name}' requires an end user: name one in {where}",
                       _HEADER_NAME if not source.body or field is None else field)
