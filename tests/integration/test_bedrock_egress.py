"""A Bedrock provider behind a company's egress: signed requests through a real forward
proxy (squid's CONNECT tunnel) to an HTTPS upstream signed by a private CA. The proxy and
CA fixtures are the egress tests' own."""

from __future__ import annotations

import pytest

from tests.integration.test_egress import ca, ca_file, squid, tls_mock  # noqa: F401 - fixtures
from tests.support.gateway import mock_providers
from tests.support.sdk_clients import openai_client
from tollway.testing.mock_bedrock_auth import MOCK_ACCESS_KEY_ID, MOCK_SECRET_ACCESS_KEY

pytest.importorskip("botocore", reason="botocore is the bedrock extra")


async def test_signed_requests_cross_a_connect_tunnel_to_a_private_ca(gateway, tls_mock, squid, ca_file) -> None:  # noqa: F811
    bedrock = {"type": "bedrock", "base_url": tls_mock.url, "region": "us-east-1", "proxy": squid.url,
               "ca_bundle": ca_file, "aws_access_key_id": MOCK_ACCESS_KEY_ID,
               "aws_secret_access_key": MOCK_SECRET_ACCESS_KEY}
    running = gateway({"providers": mock_providers(tls_mock.url, bedrock=bedrock)})
    async with openai_client(running.v1, "sk-placeholder") as client:
        model = "bedrock/us.anthropic.claude-3-5-haiku-20241022-v1:0"
        reply = await client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Hi"}])
        chunks = [c async for c in await client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "Hi"}], stream=True)]
    assert reply.choices[0].message.content and "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert f"CONNECT 127.0.0.1:{tls_mock.url.rsplit(':', 1)[1]}" in squid.wait_for_log("CONNECT")
    assert tls_mock.state.stats.requests == 2  # both passed the mock's signature check
