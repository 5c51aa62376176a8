"""Finding the virtual key a request presents (SPEC §3 step 1)."""

from __future__ import annotations

from urllib.parse import parse_qs

from tollway.asgi import Scope

_VK_PREFIX = b"tw-"


def presented_key(scope: Scope) -> str | None:
    """The virtual key value, or None.

    ``x-tollway-vk`` and Bifrost's ``x-bf-vk`` are taken as they are; ``Authorization:
    Bearer`` and ``x-api-key`` only when the value starts with ``tw-`` (clients of an
    open gateway send placeholders there).
    """
    fallback: bytes | None = None
    for name, value in scope["headers"]:
        if name == b"x-tollway-vk" or name == b"x-bf-vk":
            return value.decode("latin-1").strip()
        if name == b"authorization":
            token = value[7:].strip() if value[:7].lower() == b"bearer " else b""
            if token.startswith(_VK_PREFIX):
                fallback = token
        elif name == b"x-api-key" and value.startswith(_VK_PREFIX):
            fallback = value.strip()
    return None if fallback is None else fallback.decode("latin-1")


def presented_google_key(scope: Scope) -> str | None:
    """The virtual key of a request to Google's own route: as `presented_key` reads it,
    else ``x-goog-api-key`` or the ``key`` query parameter (how Google's SDKs and curl
    examples send an API key), when it starts with ``tw-``."""
    key = presented_key(scope)
    if key is not None:
        return key
    for name, value in scope["headers"]:
        if name == b"x-goog-api-key" and value.startswith(_VK_PREFIX):
            return value.strip().decode("latin-1")
    query = scope.get("query_string") or b""
    if b"key=" in query:
        for value in parse_qs(query.decode("latin-1")).get("key", ()):
            if value.startswith(_VK_PREFIX.decode()):
                return value.strip()
    return None
