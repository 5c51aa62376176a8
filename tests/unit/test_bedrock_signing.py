"""SigV4 signing of Bedrock requests (botocore), checked by the mock's independent verifier
(written from AWS's specification); the bedrock provider's configuration checks."""

from __future__ import annotations

import sys
import time
from typing import Any

import pytest

from tollway.config.loader import ConfigError, settings_from_dict
from tollway.providers.adapters import adapter_for
from tollway.providers.adapters.bedrock_signing import SigV4Signer
from tollway.providers.apis import Api
from tollway.testing.mock_bedrock_auth import (
    MOCK_ACCESS_KEY_ID,
    MOCK_SECRET_ACCESS_KEY,
    AuthFailure,
    AwsAccount,
    Identity,
    SignedRequest,
    canonical_request,
    verify,
)

pytest.importorskip("botocore", reason="botocore is the bedrock extra")

URL = "https://bedrock-runtime.eu-west-1.amazonaws.com/model/us.anthropic.claude-3-5-haiku-20241022-v1%3A0/converse"
BODY = b'{"messages":[{"role":"user","content":[{"text":"hi"}]}]}'


def provider(**fields: Any) -> Any:
    settings = settings_from_dict({"providers": {"aws": {"type": "bedrock", "region": "eu-west-1", **fields}}},
                                  environ={})
    return settings.providers["aws"]


def received(headers: dict[str, str], body: bytes = BODY) -> SignedRequest:
    """The request as the server reads it: the Host header the client writes, the path as sent."""
    return SignedRequest("POST", URL.split("amazonaws.com", 1)[1],
                         {"host": "bedrock-runtime.eu-west-1.amazonaws.com",
                          **{name.lower(): value for name, value in headers.items()}}, body)


async def signed(settings: Any, headers: dict[str, str] | None = None) -> dict[str, str]:
    return await SigV4Signer(settings).sign("POST", URL, headers or {"Content-Type": "application/json"}, BODY)


async def test_a_signed_request_passes_an_independent_verifier() -> None:
    headers = await signed(provider(aws_access_key_id=MOCK_ACCESS_KEY_ID, aws_secret_access_key=MOCK_SECRET_ACCESS_KEY))
    assert headers["Authorization"].startswith(f"AWS4-HMAC-SHA256 Credential={MOCK_ACCESS_KEY_ID}/")
    assert "/eu-west-1/bedrock/aws4_request" in headers["Authorization"]
    assert verify(received(headers), AwsAccount(), "bedrock") == MOCK_ACCESS_KEY_ID


async def test_the_path_is_encoded_twice_in_the_canonical_request() -> None:
    request = received({"x-amz-date": "20260101T000000Z"})
    assert canonical_request(request, ["host", "x-amz-date"]).split("\n")[1] == (
        "/model/us.anthropic.claude-3-5-haiku-20241022-v1%253A0/converse")


async def test_a_changed_body_header_or_secret_fails_verification() -> None:
    settings = provider(aws_access_key_id=MOCK_ACCESS_KEY_ID, aws_secret_access_key=MOCK_SECRET_ACCESS_KEY)
    headers = await signed(settings, {"Content-Type": "application/json", "X-Team": "a"})
    with pytest.raises(AuthFailure, match="does not match"):
        verify(received(headers, BODY.replace(b"hi", b"ho")), AwsAccount(), "bedrock")
    with pytest.raises(AuthFailure, match="does not match"):
        verify(received({**headers, "X-Team": "b"}), AwsAccount(), "bedrock")
    wrong = await signed(provider(aws_access_key_id=MOCK_ACCESS_KEY_ID, aws_secret_access_key="not-it"))
    with pytest.raises(AuthFailure, match="does not match"):
        verify(received(wrong), AwsAccount(), "bedrock")


async def test_a_stale_signature_is_refused() -> None:
    headers = await signed(provider(aws_access_key_id=MOCK_ACCESS_KEY_ID, aws_secret_access_key=MOCK_SECRET_ACCESS_KEY))
    with pytest.raises(AuthFailure, match="Signature expired") as caught:
        verify(received(headers), AwsAccount(), "bedrock", now=time.time() + 301)
    assert caught.value.error_type == "InvalidSignatureException"


async def test_temporary_credentials_send_and_sign_their_session_token() -> None:
    account = AwsAccount()
    account.identities["ASIATEMP"] = Identity("temp-secret", "the-token", time.time() + 3600)
    headers = await signed(provider(aws_access_key_id="ASIATEMP", aws_secret_access_key="temp-secret",
                                    aws_session_token="the-token"))
    assert headers["X-Amz-Security-Token"] == "the-token" and "x-amz-security-token" in headers["Authorization"]
    assert verify(received(headers), account, "bedrock") == "ASIATEMP"
    account.identities["ASIATEMP"].expires_at = time.time() - 1
    with pytest.raises(AuthFailure) as caught:
        verify(received(headers), account, "bedrock")
    assert caught.value.error_type == "ExpiredTokenException"


# --- configuration ------------------------------------------------------------------------------

@pytest.mark.parametrize(("fields", "message"), [
    ({"region": None}, "needs region"),
    ({"aws_access_key_id": "AKIA"}, "go together"),
    ({"aws_session_token": "t"}, "aws_session_token needs"),
    ({"profile": "p", "aws_access_key_id": "AKIA", "aws_secret_access_key": "s"}, "either profile"),
])
def test_bedrock_settings_that_contradict_are_config_errors(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        provider(**fields)


def test_bedrock_needs_no_key_and_defaults_to_the_regional_endpoint() -> None:
    settings = provider()
    adapter = adapter_for("bedrock")
    assert adapter.base_url(settings) == "https://bedrock-runtime.eu-west-1.amazonaws.com"
    assert adapter.auth_headers(settings.keys[0].value) == {}


@pytest.mark.parametrize(("model", "segment"), [
    ("us.anthropic.claude-3-5-haiku-20241022-v1:0", "us.anthropic.claude-3-5-haiku-20241022-v1%3A0"),
    ("../../other", "..%2F..%2Fother"), ("..", "%2E%2E"), ("a b?c#d", "a%20b%3Fc%23d")])
def test_a_model_id_cannot_leave_its_path_segment(model: str, segment: str) -> None:
    adapter = adapter_for("bedrock")
    url = adapter.url("https://host", provider(), Api.CONVERSE, model, stream=False)
    assert url == f"https://host/model/{segment}/converse"


def test_secrets_stay_out_of_the_settings_repr() -> None:
    settings = provider(aws_access_key_id=MOCK_ACCESS_KEY_ID, aws_secret_access_key=MOCK_SECRET_ACCESS_KEY,
                        aws_session_token="the-token")
    assert MOCK_SECRET_ACCESS_KEY not in repr(settings) and "the-token" not in repr(settings)


def test_a_missing_botocore_is_a_clear_config_error(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "botocore.auth", None)  # import fails as if not installed
    with pytest.raises(ConfigError, match=r"pip install 'tollway\[bedrock\]'"):
        provider()


@pytest.mark.parametrize(("api", "model", "upstream"), [
    (Api.COUNT_TOKENS, "us.anthropic.claude-3-5-haiku-20241022-v1:0", Api.BEDROCK_COUNT_TOKENS),
    (Api.COUNT_TOKENS, "anthropic.claude-3-haiku-20240307-v1:0", Api.BEDROCK_COUNT_TOKENS),
    (Api.RESPONSES_INPUT_TOKENS, "eu.anthropic.claude-sonnet-4-20250514-v1:0", Api.BEDROCK_COUNT_TOKENS),
    (Api.COUNT_TOKENS, "amazon.nova-lite-v1:0", Api.CONVERSE),  # CountTokens serves Anthropic's models only
    (Api.COUNT_TOKENS, "mistral.anthropic-like-v1:0", Api.CONVERSE),
    (Api.CONVERSE, "us.anthropic.claude-3-5-haiku-20241022-v1:0", Api.CONVERSE),
    (Api.EMBEDDINGS, "amazon.titan-embed-text-v2:0", Api.INVOKE_MODEL),
])
def test_counting_goes_to_count_tokens_for_anthropic_models(api: Api, model: str, upstream: Api) -> None:
    adapter = adapter_for("bedrock")
    assert adapter.upstream_api(provider(), api, model) is upstream


def test_count_tokens_has_its_own_path() -> None:
    url = adapter_for("bedrock").url("https://host", provider(), Api.BEDROCK_COUNT_TOKENS, "us.anthropic.c-v1:0", False)
    assert url == "https://host/model/us.anthropic.c-v1%3A0/count-tokens"
