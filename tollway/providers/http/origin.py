"""Where requests go (`Origin`) and how a request becomes the one bytes object we write.

Everything here is computed once per (origin, key) by the caller and cached: the hot
path only joins a cached prefix, the body length and the body.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True, slots=True)
class Origin:
    """scheme://host:port — one connection pool each."""

    scheme: str
    host: str
    port: int
    key: str = field(init=False, compare=False)  # a str: its hash is cached, unlike a tuple's

    def __post_init__(self) -> None:
        if self.scheme not in _DEFAULT_PORTS:
            raise ValueError(f"unsupported URL scheme {self.scheme!r} (http or https)")
        object.__setattr__(self, "key", f"{self.scheme}://{self.host}:{self.port}")

    @property
    def tls(self) -> bool:
        return self.scheme == "https"

    @property
    def host_header(self) -> str:
        """The Host header's value: the port only when it is not the scheme's default."""
        host = f"[{self.host}]" if ":" in self.host else self.host  # an IPv6 literal
        return host if self.port == _DEFAULT_PORTS[self.scheme] else f"{host}:{self.port}"


def split_url(url: str) -> tuple[Origin, str]:
    """The origin of an absolute http(s) URL and its request target (path and query)."""
    parts = urlsplit(url)
    if not parts.hostname:
        raise ValueError(f"not an absolute URL: {url!r}")
    scheme = parts.scheme.lower()
    port = parts.port or _DEFAULT_PORTS.get(scheme, 0)
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    return Origin(scheme, parts.hostname, port), target


def header_block(origin: Origin, headers: Mapping[str, str]) -> bytes:
    """`Host` and ``headers`` as CRLF-terminated lines, ready to sit after a request line.

    Values with CR or LF are refused: a header value must never be able to start a
    second header or a second request.
    """
    lines = [f"Host: {origin.host_header}\r\n"]
    for name, value in headers.items():
        if "\r" in name or "\n" in name or "\r" in value or "\n" in value or ":" in name:
            raise ValueError(f"invalid header {name!r}")
        if name.lower() in ("host", "content-length", "transfer-encoding", "connection"):
            continue  # framing headers are ours to write
        lines.append(f"{name}: {value}\r\n")
    return "".join(lines).encode("latin-1")


def request_prefix(method: str, target: str, block: bytes) -> bytes:
    """Everything of a request with a body up to the Content-Length value."""
    return f"{method} {target} HTTP/1.1\r\n".encode("latin-1") + block + b"Content-Length: "


def encode_request(prefix: bytes, body: bytes) -> bytes:
    """The whole request as one bytes object: one write, one syscall, no Nagle stall."""
    return b"".join((prefix, str(len(body)).encode(), b"\r\n\r\n", body))


def encode_bodyless(method: str, target: str, block: bytes) -> bytes:
    """A request without a body (GET)."""
    return f"{method} {target} HTTP/1.1\r\n".encode("latin-1") + block + b"\r\n"
