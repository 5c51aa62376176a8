"""Google's own route: the model and stream read from the path, the virtual key from
`x-goog-api-key` or `?key=`."""

from __future__ import annotations

import pytest

from tollway.proxy.auth import presented_google_key
from tollway.proxy.google_route import route_fields

KEY = "tw-0123456789abcdef"


@pytest.mark.parametrize(("path", "fields"), [
    ("/v1beta/models/gemini/gemini-2.0-flash:generateContent", {"model": "gemini/gemini-2.0-flash", "stream": False}),
    ("/v1beta/models/fast:streamGenerateContent", {"model": "fast", "stream": True}),
    ("/v1/models/gemini-2.5-flash:generateContent", {"model": "gemini-2.5-flash", "stream": False}),
    ("/v1beta/models/a:b:generateContent", {"model": "a:b", "stream": False}),  # the method is after the last colon
    ("/v1beta/models/gemini:countTokens", None), ("/v1beta/models/:generateContent", None),
    ("/v1beta/models/gemini-2.0-flash", None), ("/v2/models/m:generateContent", None),
])
def test_the_path_names_the_model_and_whether_to_stream(path: str, fields: dict | None) -> None:
    assert route_fields(path) == fields


def _scope(headers: list[tuple[bytes, bytes]], query: bytes = b"") -> dict:
    return {"headers": headers, "query_string": query}


@pytest.mark.parametrize(("headers", "query", "key"), [
    ([(b"x-goog-api-key", KEY.encode())], b"", KEY),
    ([], b"alt=sse&key=" + KEY.encode(), KEY),
    ([(b"x-tollway-vk", b"tw-other")], b"key=" + KEY.encode(), "tw-other"),  # the gateway's own header wins
    ([(b"x-goog-api-key", b"AIza-a-google-key")], b"", None),  # a Google key is not a virtual key
    ([], b"key=AIza-x", None), ([], b"", None),
])
def test_the_virtual_key_comes_from_googles_places(headers: list, query: bytes, key: str | None) -> None:
    assert presented_google_key(_scope(headers, query)) == key
