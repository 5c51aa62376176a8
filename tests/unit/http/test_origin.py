"""Origins, URLs and request encoding: the parts of the native client with no I/O."""

from __future__ import annotations

import pytest

from tollway.providers.http import Origin, encode_bodyless, encode_request, header_block, request_prefix, split_url


@pytest.mark.parametrize(
    ("url", "origin", "target", "host"),
    [
        ("https://api.openai.com/v1/chat/completions", ("https", "api.openai.com", 443), "/v1/chat/completions", "api.openai.com"),
        ("http://127.0.0.1:8080/v1", ("http", "127.0.0.1", 8080), "/v1", "127.0.0.1:8080"),
        ("HTTP://Example.com", ("http", "example.com", 80), "/", "example.com"),
        ("https://x.azure.com/openai/deployments/d/chat/completions?api-version=2024-06-01",
         ("https", "x.azure.com", 443), "/openai/deployments/d/chat/completions?api-version=2024-06-01", "x.azure.com"),
        ("http://[::1]:9000/a", ("http", "::1", 9000), "/a", "[::1]:9000"),
    ],
)
def test_split_url(url: str, origin: tuple[str, str, int], target: str, host: str) -> None:
    parsed, parsed_target = split_url(url)
    assert (parsed.scheme, parsed.host, parsed.port) == origin
    assert parsed_target == target
    assert parsed.host_header == host


@pytest.mark.parametrize("url", ["ftp://example.com/x", "/relative/path", "http:///no-host"])
def test_split_url_refuses_what_it_cannot_serve(url: str) -> None:
    with pytest.raises(ValueError):
        split_url(url)


def test_origins_with_the_same_address_share_a_key() -> None:
    assert Origin("http", "h", 1).key == split_url("http://h:1/x")[0].key == "http://h:1"
    assert Origin("https", "h", 1).key != Origin("http", "h", 1).key


def test_a_request_is_one_bytes_object_with_exact_framing() -> None:
    origin = Origin("https", "api.example.com", 443)
    block = header_block(origin, {"Authorization": "Bearer k", "Content-Type": "application/json",
                                  "Content-Length": "999", "Host": "evil"})
    request = encode_request(request_prefix("POST", "/v1/chat", block), b'{"a":1}')
    assert request == (b"POST /v1/chat HTTP/1.1\r\nHost: api.example.com\r\nAuthorization: Bearer k\r\n"
                       b"Content-Type: application/json\r\nContent-Length: 7\r\n\r\n{\"a\":1}")


def test_a_bodyless_request_has_no_content_length() -> None:
    origin = Origin("http", "h", 8000)
    assert encode_bodyless("GET", "/v1/models", header_block(origin, {"X-Key": "k"})) == (
        b"GET /v1/models HTTP/1.1\r\nHost: h:8000\r\nX-Key: k\r\n\r\n")


@pytest.mark.parametrize("headers", [{"X-Bad": "a\r\nInjected: yes"}, {"X-Bad\n": "v"}, {"a:b": "v"}])
def test_header_values_cannot_inject_lines(headers: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        header_block(Origin("http", "h", 80), headers)
