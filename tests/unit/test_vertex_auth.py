"""Vertex AI's access tokens: kept, refreshed ahead of expiry (one refresh however many ask),
failures reported without hammering the token endpoint; and google-auth's JWT-bearer grant
against the mock's token endpoint, which checks the assertion the way Google does."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tollway.config import settings_from_dict
from tollway.providers.adapters.base import TokenUnavailable
from tollway.providers.adapters.vertex_auth import AccessTokens, google_mint
from tollway.testing.mock_upstream import MockUpstream, start_mock_upstream
from tollway.testing.mock_vertex import new_service_account

pytest.importorskip("google.auth", reason="google-auth is the vertex extra (in the test extra)")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Minter:
    """Tokens `t1`, `t2` ... of ``lifetime`` seconds; a gate holds each mint until released."""

    def __init__(self, lifetime: float = 600.0) -> None:
        self.lifetime = lifetime
        self.calls = 0
        self.fail: str | None = None
        self.gate = threading.Event()
        self.gate.set()

    def __call__(self) -> tuple[str, float]:
        self.calls += 1
        self.gate.wait(5)
        if self.fail is not None:
            raise TokenUnavailable(self.fail)
        return f"t{self.calls}", self.lifetime


async def test_a_token_is_minted_once_and_kept_until_its_refresh_point() -> None:
    clock, mint = Clock(), Minter(lifetime=600)
    tokens = AccessTokens(mint, clock)
    assert await tokens.token() == "t1"
    clock.now += 299  # refresh point: min(5 minutes, half the lifetime) before expiry = 300 s in
    assert await tokens.token() == "t1" and mint.calls == 1


async def test_near_expiry_the_old_token_serves_while_one_refresh_runs() -> None:
    clock, mint = Clock(), Minter(lifetime=600)
    tokens = AccessTokens(mint, clock)
    await tokens.token()
    clock.now += 301
    mint.gate.clear()  # the refresh hangs: nobody waits for it
    answers = await asyncio.wait_for(asyncio.gather(*(tokens.token() for _ in range(50))), 2)
    assert set(answers) == {"t1"}
    mint.gate.set()
    for _ in range(100):
        if tokens.refreshes == 2:
            break
        await asyncio.sleep(0.01)
    assert mint.calls == 2 and await tokens.token() == "t2"


async def test_concurrent_requests_at_expiry_wait_for_one_refresh() -> None:
    clock, mint = Clock(), Minter(lifetime=60)
    tokens = AccessTokens(mint, clock)
    await tokens.token()
    clock.now += 61  # expired: nobody may use t1
    mint.gate.clear()
    waiting = [asyncio.ensure_future(tokens.token()) for _ in range(100)]
    await asyncio.sleep(0.05)
    assert not any(task.done() for task in waiting)
    mint.gate.set()
    assert set(await asyncio.gather(*waiting)) == {"t2"} and mint.calls == 2


async def test_a_waiter_that_gives_up_does_not_cancel_the_refresh_of_the_others() -> None:
    clock, mint = Clock(), Minter()
    tokens = AccessTokens(mint, clock)
    mint.gate.clear()
    impatient, patient = asyncio.ensure_future(tokens.token()), asyncio.ensure_future(tokens.token())
    await asyncio.sleep(0.02)
    impatient.cancel()
    mint.gate.set()
    assert await patient == "t1" and mint.calls == 1


async def test_a_failed_refresh_is_reported_and_not_retried_per_request() -> None:
    clock, mint = Clock(), Minter()
    mint.fail = "cannot get a Google access token: invalid_grant"
    tokens = AccessTokens(mint, clock)
    with pytest.raises(TokenUnavailable, match="invalid_grant"):
        await tokens.token()
    for _ in range(20):
        with pytest.raises(TokenUnavailable, match="invalid_grant"):
            await tokens.token()
    assert mint.calls == 1
    mint.fail = None
    clock.now += 2.5  # past the pause after a failure: asked again
    assert await tokens.token() == "t2" and mint.calls == 2


async def test_a_failed_refresh_ahead_of_expiry_keeps_the_old_token_serving() -> None:
    clock, mint = Clock(), Minter(lifetime=600)
    tokens = AccessTokens(mint, clock)
    await tokens.token()
    clock.now += 400
    mint.fail = "endpoint down"
    assert await tokens.token() == "t1"
    await asyncio.sleep(0.05)  # the background refresh failed meanwhile
    assert await tokens.token() == "t1" and mint.calls == 2
    clock.now += 201  # expired now, and the endpoint still down
    with pytest.raises(TokenUnavailable, match="endpoint down"):
        await tokens.token()


async def test_an_invalidated_token_is_replaced_on_the_next_call() -> None:
    clock, mint = Clock(), Minter()
    tokens = AccessTokens(mint, clock)
    await tokens.token()
    tokens.invalidate("some-older-token")  # a token no longer current changes nothing
    assert await tokens.token() == "t1"
    tokens.invalidate("t1")
    assert await tokens.token() == "t2"


# --- google-auth against the mock's token endpoint ----------------------------------------------------

@pytest.fixture
async def mock() -> AsyncIterator[MockUpstream]:
    upstream = await start_mock_upstream()
    yield upstream
    await upstream.close()


@pytest.fixture(scope="module")
def key() -> tuple[dict[str, Any], str]:
    return new_service_account("http://placeholder/token")


async def _register(mock: MockUpstream, info: dict[str, Any], public: str) -> None:
    async with aiohttp.ClientSession() as session:
        body = {"client_email": info["client_email"], "public_key": public}
        async with session.post(mock.url + "/_mock/vertex/accounts", json=body) as response:
            assert response.status == 200


def _settings(info: dict[str, Any]) -> Any:
    config = {"providers": {"v": {"type": "vertex", "credentials": json.dumps(info), "proxy": "none"}}}
    return settings_from_dict(config).providers["v"]


async def test_google_auth_mints_a_token_the_mock_signed_off(mock: MockUpstream, key) -> None:
    info, public = key
    await _register(mock, info, public)
    tokens = AccessTokens(google_mint(_settings({**info, "token_uri": mock.url + "/token"})))
    token = await tokens.token()
    assert token.startswith("ya29.mock-") and await tokens.token() == token
    grant = [r for r in mock.state.requests if r["path"] == "/token"]
    assert len(grant) == 1


async def test_a_key_whose_signature_does_not_match_is_refused(mock: MockUpstream, key) -> None:
    info, public = key
    other, _ = new_service_account(mock.url + "/token", email=info["client_email"])  # same name, other key
    await _register(mock, info, public)
    tokens = AccessTokens(google_mint(_settings(other)))
    with pytest.raises(TokenUnavailable, match="Invalid JWT Signature"):
        await tokens.token()


async def _grant(mock: MockUpstream, assertion: str) -> tuple[int, dict[str, Any]]:
    form = {"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": assertion}
    async with aiohttp.ClientSession() as session, session.post(mock.url + "/token", data=form) as response:
        return response.status, await response.json()


def _assertion(info: dict[str, Any], **claims: Any) -> str:
    from google.auth import crypt, jwt

    now = int(time.time())
    payload = {"iss": info["client_email"], "aud": "https://oauth2.googleapis.com/token", "iat": now,
               "exp": now + 3600, "scope": "https://www.googleapis.com/auth/cloud-platform", **claims}
    return jwt.encode(crypt.RSASigner.from_service_account_info(info), payload).decode()


async def test_the_token_endpoint_checks_the_assertion_as_google_does(mock: MockUpstream, key) -> None:
    info, public = key
    await _register(mock, info, public)
    assert (await _grant(mock, _assertion(info)))[0] == 200
    header, payload, signature = _assertion(info).split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    forged = base64.urlsafe_b64encode(json.dumps({**claims, "iss": "admin@x"}).encode()).decode().rstrip("=")
    for assertion, problem in [
        (f"{header}.{forged}.{signature}", "no such service account"),
        (_assertion(info, exp=int(time.time()) - 3600), "short-lived"),
        (_assertion(info, aud="https://elsewhere/token"), "audience"),
        (_assertion(info, scope=""), "scope"),
        ("not-a-jwt", "three base64url"),
    ]:
        status, body = await _grant(mock, assertion)
        assert status == 400 and body["error"] == "invalid_grant" and problem in body["error_description"]


async def test_a_tampered_payload_fails_the_signature(mock: MockUpstream, key) -> None:
    info, public = key
    await _register(mock, info, public)
    header, payload, signature = _assertion(info).split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    longer = base64.urlsafe_b64encode(json.dumps({**claims, "exp": claims["exp"] + 86400}).encode()).decode()
    status, body = await _grant(mock, f"{header}.{longer.rstrip('=')}.{signature}")
    assert status == 400 and body["error_description"] == "Invalid JWT Signature."


async def test_without_credentials_application_default_credentials_are_used(mock: MockUpstream, key, tmp_path,
                                                                               monkeypatch) -> None:
    info, public = key
    await _register(mock, info, public)
    path = tmp_path / "adc.json"
    path.write_text(json.dumps({**info, "token_uri": mock.url + "/token"}))
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(path))
    settings = settings_from_dict({"providers": {"v": {"type": "vertex", "project": "p", "proxy": "none"}}})
    tokens = AccessTokens(google_mint(settings.providers["v"]))
    assert (await tokens.token()).startswith("ya29.mock-")
