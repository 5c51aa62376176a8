"""Upstream calls as companies run them: through a real forward proxy (squid), to an HTTPS
upstream signed by a private CA, with a client certificate where the upstream asks for one."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import openai
import pytest
import trustme

from tests.support.gateway import RunningGateway, mock_providers
from tests.support.sdk_clients import openai_client
from tests.support.squid import SquidServer, require_squid
from tollway.testing.mock_upstream import MockUpstream, start_mock_upstream

HELLO = [{"role": "user", "content": "Hello"}]


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def ca_file(ca: trustme.CA, tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture
def squid() -> Iterator[SquidServer]:
    server = require_squid()
    yield server
    server.stop()


def _server_context(ca: trustme.CA, require_client_cert: bool) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    if require_client_cert:
        context.verify_mode = ssl.CERT_REQUIRED
        ca.configure_trust(context)
    return context


@pytest.fixture
async def tls_mock(ca: trustme.CA) -> AsyncIterator[MockUpstream]:
    upstream = await start_mock_upstream(ssl_context=_server_context(ca, require_client_cert=False))
    yield upstream
    await upstream.close()


@pytest.fixture
async def mtls_mock(ca: trustme.CA) -> AsyncIterator[MockUpstream]:
    upstream = await start_mock_upstream(ssl_context=_server_context(ca, require_client_cert=True))
    yield upstream
    await upstream.close()


def _openai_provider(mock: MockUpstream, **settings: object) -> dict:
    return {"providers": mock_providers(mock.url, openai=settings)}


async def _chat(running: RunningGateway, stream: bool = False) -> str:
    async with openai_client(running.v1, "sk-placeholder") as client:
        if stream:
            chunks = [c async for c in await client.chat.completions.create(model="openai/gpt-4o-mini", messages=HELLO,
                                                                               stream=True)]
            return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        reply = await client.chat.completions.create(model="openai/gpt-4o-mini", messages=HELLO)
        return reply.choices[0].message.content or ""


def _port(mock: MockUpstream) -> int:
    return int(mock.url.rsplit(":", 1)[1])


async def test_plain_http_upstream_is_reached_through_the_proxy_in_absolute_form(gateway, mock, squid) -> None:
    running = gateway(_openai_provider(mock, proxy=squid.url))
    assert await _chat(running)
    assert await _chat(running, stream=True)
    log = squid.wait_for_log("/v1/chat/completions")
    assert f"POST http://127.0.0.1:{_port(mock)}/v1/chat/completions" in log
    assert mock.state.stats.requests == 2


async def test_https_upstream_is_reached_through_a_connect_tunnel_trusting_a_private_ca(
        gateway, tls_mock, squid, ca_file) -> None:
    running = gateway(_openai_provider(tls_mock, proxy=squid.url, ca_bundle=ca_file))
    assert await _chat(running)
    assert await _chat(running, stream=True)
    log = squid.wait_for_log("CONNECT")
    assert f"CONNECT 127.0.0.1:{_port(tls_mock)}" in log
    assert "/v1/chat/completions" not in log  # the proxy sees the host, never the request
    assert tls_mock.state.stats.requests == 2


async def test_an_upstream_signed_by_an_unknown_ca_is_refused(gateway, tls_mock) -> None:
    running = gateway(_openai_provider(tls_mock))
    with pytest.raises(openai.APIStatusError) as refused:
        await _chat(running)
    assert refused.value.status_code == 502
    assert "certificate verify failed" in refused.value.message
    assert tls_mock.state.stats.requests == 0


async def test_mutual_tls_sends_the_client_certificate(gateway, mtls_mock, ca, ca_file, tmp_path: Path) -> None:
    client_cert = ca.issue_cert("tollway-gateway")
    cert_file, key_file = tmp_path / "client.pem", tmp_path / "client.key"
    client_cert.cert_chain_pems[0].write_to_path(str(cert_file))
    client_cert.private_key_pem.write_to_path(str(key_file))
    with_cert = gateway(_openai_provider(mtls_mock, ca_bundle=ca_file, client_cert=str(cert_file),
                                         client_key=str(key_file)))
    assert await _chat(with_cert)
    without = gateway(_openai_provider(mtls_mock, ca_bundle=ca_file))
    with pytest.raises(openai.APIStatusError) as refused:
        await _chat(without)
    assert refused.value.status_code == 502
    assert mtls_mock.state.stats.requests == 1


async def test_the_environments_proxy_applies_unless_no_proxy_names_the_host(gateway, mock, squid) -> None:
    via_proxy = gateway({**_openai_provider(mock), "egress": {"http_proxy": squid.url, "no_proxy": "example.com"}})
    assert await _chat(via_proxy)
    assert "/v1/chat/completions" in squid.wait_for_log("/v1/chat/completions")
    lines = squid.access_log().count("\n")
    for no_proxy in ("127.0.0.1", "127.0.0.0/8", f"127.0.0.1:{_port(mock)}", "*"):
        direct = gateway({**_openai_provider(mock), "egress": {"http_proxy": squid.url, "no_proxy": no_proxy}})
        assert await _chat(direct)
    overridden = gateway({**_openai_provider(mock, proxy="none"), "egress": {"http_proxy": squid.url}})
    assert await _chat(overridden)
    assert squid.access_log().count("\n") == lines  # none of those went through the proxy


async def test_proxy_credentials_are_sent_and_wrong_ones_fail_clearly(gateway, mock, tls_mock, ca_file) -> None:
    squid = require_squid(credentials=("tollway", "s3cret:/@"))
    try:
        user = f"http://tollway:{'s3cret%3A%2F%40'}@127.0.0.1:{squid.port}"
        assert await _chat(gateway(_openai_provider(mock, proxy=user)))
        assert await _chat(gateway(_openai_provider(tls_mock, proxy=user, ca_bundle=ca_file)))
        log = squid.wait_for_log("CONNECT")
        assert "tollway" in log  # squid logs the authenticated user
        wrong = gateway(_openai_provider(tls_mock, proxy=f"http://tollway:nope@127.0.0.1:{squid.port}", ca_bundle=ca_file))
        with pytest.raises(openai.APIStatusError) as refused:
            await _chat(wrong)
        assert refused.value.status_code == 502
        assert "407" in refused.value.message
    finally:
        squid.stop()
