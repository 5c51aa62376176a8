"""A request's tags (SPEC §8): the ``x-tollway-tags`` header and the body's ``metadata.tags``.

Both are read and their tags joined (each normalised, `tollway.governance.tags`); a bad
tag is a 400 naming where it came from. ``metadata.tags`` is the gateway's, not the
provider's: it is taken out of the body before the body goes upstream (OpenAI allows
only string values in ``metadata``, Anthropic only ``user_id``), and a ``metadata`` left
empty goes too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from tollway.asgi import Scope
from tollway.errors import bad_request
from tollway.governance.tags import MAX_REQUEST_TAGS, BadTag, header_tags, normalise_tags

HEADER = b"x-tollway-tags"
HEADER_NAME = HEADER.decode()
BODY_FIELD = "metadata.tags"
# Items of a metadata.tags array read at most (duplicates included): the work on one
# request stays bounded whatever the body holds.
MAX_BODY_ITEMS = MAX_REQUEST_TAGS * 4
_NO_TAGS: tuple[str, ...] = ()
V = TypeVar("V")


def request_tags(scope: Scope, body: dict[str, Any] | None = None) -> tuple[str, ...]:
    """The request's tags, distinct and normalised; ``metadata.tags`` is removed from
    ``body`` (when given). Raises a 400 naming the header or field of a bad tag."""
    header = _header_value(scope)
    from_header = _NO_TAGS if header is None else _parse(HEADER_NAME, header_tags, header)
    from_body = _NO_TAGS if body is None else _body_tags(body)
    if not from_body:
        return from_header
    if not from_header:
        return from_body
    return _parse(f"{HEADER_NAME} and {BODY_FIELD}", normalise_tags, (*from_header, *from_body))


def _header_value(scope: Scope) -> str | None:
    """Every ``x-tollway-tags`` header, joined as HTTP joins a repeated header (with commas)."""
    values = [value for name, value in scope["headers"] if name == HEADER]
    if not values:
        return None
    return b",".join(values).decode("latin-1")


def _body_tags(body: dict[str, Any]) -> tuple[str, ...]:
    metadata = body.get("metadata")
    if not isinstance(metadata, dict) or "tags" not in metadata:
        return _NO_TAGS
    value = metadata.pop("tags")
    if not metadata:
        del body["metadata"]
    if isinstance(value, str):  # OpenAI's metadata holds strings only: "a,b" is how its SDKs send a list
        return _parse(BODY_FIELD, header_tags, value)
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise bad_request(f"'{BODY_FIELD}' must be an array of strings or a comma-separated string", BODY_FIELD)
    if len(value) > MAX_BODY_ITEMS:
        raise bad_request(f"'{BODY_FIELD}': at most {MAX_REQUEST_TAGS} distinct tags per request, in at most "
                          f"{MAX_BODY_ITEMS} items", BODY_FIELD)
    return _parse(BODY_FIELD, normalise_tags, value)


def _parse(where: str, parse: Callable[[V], tuple[str, ...]], value: V) -> tuple[str, ...]:
    """``parse(value)``, or a 400 naming ``where`` (the header or the field) and why."""
    try:
        return parse(value)
    except BadTag as exc:
        raise bad_request(f"'{where}': {exc}", where) from None
