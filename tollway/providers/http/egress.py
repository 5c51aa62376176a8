"""Egress as companies run it: an HTTP proxy in front of the internet, a private CA, client
certificates.

- `EgressProxy`: an `http://[user:password@]host:port` forward proxy. HTTPS upstreams are
  reached through a `CONNECT` tunnel (TLS then runs end to end, the proxy sees only the
  host name); plain-HTTP upstreams get absolute-form request targets, as RFC 9112 §3.2.2
  asks of a client talking to a proxy.
- `choose_proxy`: a provider's own `proxy:` setting wins (`none` means direct); otherwise
  the `HTTPS_PROXY` / `HTTP_PROXY` of the environment (as the config loader read it), unless
  the upstream's host matches `NO_PROXY` (curl's rules: exact names, domain suffixes, `*`,
  IP addresses and CIDR ranges, an optional `:port`).
- `tls_context`: a custom CA bundle and a client certificate (mutual TLS) when set.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import socket
import ssl
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from tollway.providers.http.errors import UpstreamConnectError

_MAX_CONNECT_RESPONSE = 16 * 1024  # a proxy's answer to CONNECT is a status line and a few headers


@dataclass(frozen=True, slots=True)
class EgressProxy:
    """A forward proxy; ``authorization`` is the Proxy-Authorization value, if any."""

    host: str
    port: int
    authorization: str | None = None

    def __repr__(self) -> str:  # the credentials are a secret: never in logs
        return f"EgressProxy({self.host}:{self.port}{', with credentials' if self.authorization else ''})"

    @classmethod
    def parse(cls, url: str) -> EgressProxy:
        """From ``http://[user:password@]host[:port]`` (port 80 when absent; a bare
        ``host:port`` is taken as http). Raises ValueError for anything else."""
        parts = urlsplit(url if "://" in url else f"http://{url}")
        if parts.scheme.lower() != "http":
            raise ValueError(f"proxy {url!r}: only http:// proxies are supported (HTTPS upstreams are "
                             "still end-to-end TLS through them, by CONNECT)")
        if not parts.hostname:
            raise ValueError(f"proxy {url!r} has no host")
        authorization = None
        if parts.username is not None:
            pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            authorization = "Basic " + base64.b64encode(pair.encode()).decode()
        return cls(parts.hostname, parts.port or 80, authorization)


def choose_proxy(target_url: str, provider_proxy: str | None, http_proxy: str | None, https_proxy: str | None,
                 no_proxy: str | None) -> EgressProxy | None:
    """The proxy for requests to ``target_url``, or None to go direct."""
    if provider_proxy is not None:
        return None if provider_proxy.strip().lower() in ("", "none", "direct") else EgressProxy.parse(provider_proxy)
    parts = urlsplit(target_url)
    chosen = https_proxy if parts.scheme == "https" else http_proxy
    if not chosen or not parts.hostname:
        return None
    port = parts.port or (443 if parts.scheme == "https" else 80)
    if no_proxy and bypasses_proxy(parts.hostname, port, no_proxy):
        return None
    return EgressProxy.parse(chosen)


def bypasses_proxy(host: str, port: int, no_proxy: str) -> bool:
    """Whether ``NO_PROXY`` (comma- or space-separated) says to reach ``host:port`` directly."""
    host = host.lower().strip("[]")
    for entry in no_proxy.replace(" ", ",").split(","):
        entry = entry.strip().lower()
        if not entry:
            continue
        if entry == "*":
            return True
        entry, entry_port = _split_port(entry)
        if entry_port is not None and entry_port != port:
            continue
        if _address_matches(host, entry) or host == entry.lstrip(".") or host.endswith("." + entry.lstrip(".")):
            return True
    return False


def _split_port(entry: str) -> tuple[str, int | None]:
    if entry.startswith("["):  # [v6]:port
        address, _, rest = entry[1:].partition("]")
        return address, int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else None
    if entry.count(":") == 1:
        name, _, port = entry.partition(":")
        if port.isdigit():
            return name, int(port)
    return entry, None


def _address_matches(host: str, entry: str) -> bool:
    try:
        address = ipaddress.ip_address(host)
        return address in ipaddress.ip_network(entry, strict=False)
    except ValueError:  # not an IP address, or not a network
        return False


def tls_context(ca_bundle: str | None, client_cert: str | None, client_key: str | None) -> ssl.SSLContext | None:
    """The TLS context for a provider: system CAs (or ``ca_bundle`` instead), and a client
    certificate for mutual TLS; None when nothing is customised (the client's default)."""
    if not (ca_bundle or client_cert):
        return None
    context = ssl.create_default_context(cafile=ca_bundle) if ca_bundle else ssl.create_default_context()
    if client_cert:
        context.load_cert_chain(client_cert, client_key)
    return context


async def open_tunnel(loop: asyncio.AbstractEventLoop, proxy: EgressProxy, host: str, port: int) -> socket.socket:
    """A connected socket to the proxy on which ``CONNECT host:port`` succeeded: what is
    written on it next reaches the upstream. Raises `UpstreamConnectError` (with the
    proxy's status, e.g. 407 when it wants credentials, 403 when its policy says no)."""
    try:
        infos = await loop.getaddrinfo(proxy.host, proxy.port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise UpstreamConnectError(host, port, f"cannot resolve proxy {proxy.host}: {exc}") from None
    family, kind, protocol, _, address = infos[0]
    sock = socket.socket(family, kind, protocol)
    sock.setblocking(False)
    try:
        await loop.sock_connect(sock, address)
        authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        request = f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n"
        if proxy.authorization:
            request += f"Proxy-Authorization: {proxy.authorization}\r\n"
        await loop.sock_sendall(sock, (request + "\r\n").encode("latin-1"))
        status_line = await _read_head(loop, sock)
    except OSError as exc:
        sock.close()
        raise UpstreamConnectError(host, port, f"through proxy {proxy.host}:{proxy.port}: {exc}") from None
    except BaseException:
        sock.close()
        raise
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or parts[1] != "200":
        sock.close()
        raise UpstreamConnectError(host, port, f"proxy {proxy.host}:{proxy.port} refused the tunnel: {status_line!r}")
    return sock


async def _read_head(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> str:
    """The status line of the proxy's answer, once its whole head has arrived.

    Reading past the head is harmless: after a 200 the tunnel stays silent until our TLS
    hello (the client speaks first in TLS), and after anything else the socket is closed.
    """
    head = b""
    while b"\r\n\r\n" not in head:
        piece = await loop.sock_recv(sock, 4096)
        if not piece:
            raise ConnectionResetError("the proxy closed the connection during CONNECT")
        head += piece
        if len(head) > _MAX_CONNECT_RESPONSE:
            raise ConnectionResetError("the proxy's answer to CONNECT is too long")
    return head.split(b"\r\n", 1)[0].decode("latin-1")
