"""Vertex AI routes of the mock upstream, and a fake Google OAuth token endpoint.

- `POST /token`: the JWT-bearer grant (`grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer`,
  `assertion=<JWT>`). The assertion's RS256 signature is checked with the public key of a
  registered service account (`iss`), its `aud` Google's token endpoint (or this one's URL) and its `exp`
  in the future; the answer is an access token valid for `token_lifetime_s` (short, so
  tests see refreshes). Errors are OAuth's (`{"error": "invalid_grant", ...}`).
- `POST /v1/projects/{project}/locations/{region}/publishers/google/models/{model}:{method}`:
  the Gemini methods of `mock_gemini` (`generateContent`, `streamGenerateContent`,
  `countTokens`, `embedContent`) and `predict` (text-embedding models).
- `POST .../publishers/anthropic/models/{model}:rawPredict|streamRawPredict` and
  `.../count-tokens:rawPredict`: `mock_anthropic`'s answers, for a body that names no
  `model` (count-tokens: one that does) and says `anthropic_version: vertex-2023-10-16`.

Every model route wants `Authorization: Bearer <a token this mock issued, unexpired>`
(401 UNAUTHENTICATED otherwise). Faults, latency and recording are the mock's usual ones
(`mock_http.endpoint`); the token endpoint is `/token` for a fault's path.

Control: `POST /_mock/vertex/accounts {"client_email", "public_key"}` registers a key,
`POST /_mock/vertex/settings {"token_lifetime_s"}`, `GET /_mock/vertex` the counts,
`DELETE /_mock/vertex/tokens` revokes every token issued. `new_service_account` makes a
fresh key pair and its JSON for tests (no key file is ever committed).
"""

from __future__ import annotations

import base64
import itertools
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from aiohttp import web
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from tollway.testing import mock_anthropic, mock_gemini
from tollway.testing import mock_content as content
from tollway.testing.mock_http import MockCall, bearer_token, endpoint, error_response, send_json

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"
VERTEX_ANTHROPIC_VERSION = "vertex-2023-10-16"
_CLOCK_SKEW_S = 60


@dataclass
class VertexAuthority:
    """The fake Google identity: registered service accounts and the tokens it issued."""

    token_lifetime_s: float = 3600.0
    accounts: dict[str, rsa.RSAPublicKey] = field(default_factory=dict)
    tokens: dict[str, float] = field(default_factory=dict)  # token -> monotonic expiry
    grants: int = 0
    refused_grants: int = 0
    refused_tokens: int = 0
    _serial: itertools.count[int] = field(default_factory=itertools.count)

    def issue(self) -> str:
        token = f"ya29.mock-{next(self._serial)}-{secrets.token_hex(8)}"
        self.tokens[token] = time.monotonic() + self.token_lifetime_s
        self.grants += 1
        return token

    def valid(self, token: str) -> bool:
        expiry = self.tokens.get(token)
        return expiry is not None and time.monotonic() < expiry

    def counts(self) -> dict[str, Any]:
        return {"grants": self.grants, "refused_grants": self.refused_grants, "refused_tokens": self.refused_tokens,
                "token_lifetime_s": self.token_lifetime_s, "accounts": sorted(self.accounts)}


AUTHORITY_KEY: web.AppKey[VertexAuthority] = web.AppKey("tollway_mock_vertex", VertexAuthority)


def new_service_account(token_uri: str, project: str = "mock-project",
                        email: str = "tollway-test@mock-project.iam.gserviceaccount.com") -> tuple[dict[str, Any], str]:
    """A new RSA key as a service-account JSON whose `token_uri` is ``token_uri``, and the
    PEM of its public key (to register with the mock)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    info = {"type": "service_account", "project_id": project, "private_key_id": secrets.token_hex(20),
            "private_key": private, "client_email": email, "client_id": "1" * 21, "token_uri": token_uri}
    return info, public


def _b64(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _oauth_error(status: int, error: str, description: str) -> web.Response:
    return web.Response(status=status, content_type="application/json",
                        body=json.dumps({"error": error, "error_description": description}))


def _assertion_problem(authority: VertexAuthority, assertion: str, audience: str) -> str | None:
    """Why Google would refuse the JWT ``assertion`` (None: it would not)."""
    try:
        header_part, payload_part, signature_part = assertion.split(".")
        header, claims = json.loads(_b64(header_part)), json.loads(_b64(payload_part))
        signature = _b64(signature_part)
    except ValueError:
        return "Invalid JWT: not three base64url JSON segments"
    if not isinstance(header, dict) or not isinstance(claims, dict) or header.get("alg") != "RS256":
        return "Invalid JWT: the algorithm must be RS256"
    key = authority.accounts.get(str(claims.get("iss")))
    if key is None:
        return "Invalid JWT: no such service account (iss)"
    try:
        key.verify(signature, f"{header_part}.{payload_part}".encode(), padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        return "Invalid JWT Signature."
    now = time.time()
    if claims.get("aud") not in (GOOGLE_TOKEN_URI, audience):  # google-auth names Google's endpoint
        return f"Invalid JWT: the audience must be {GOOGLE_TOKEN_URI}"
    if not isinstance(claims.get("exp"), int | float) or claims["exp"] < now - _CLOCK_SKEW_S:
        return "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe"
    if not isinstance(claims.get("iat"), int | float) or claims["iat"] > now + _CLOCK_SKEW_S:
        return "Invalid JWT: the token was issued in the future"
    if "cloud-platform" not in str(claims.get("scope", "")):
        return "Invalid JWT: no scope asked for"
    return None


async def token(call: MockCall) -> web.StreamResponse:
    """`POST /token`: a JWT-bearer grant answered with an access token."""
    authority = call.request.app[AUTHORITY_KEY]
    form = {name: values[0] for name, values in parse_qs(call.raw.decode(errors="replace")).items()}
    if form.get("grant_type") != JWT_BEARER:
        authority.refused_grants += 1
        return _oauth_error(400, "unsupported_grant_type", "Invalid grant_type")
    audience = f"{call.request.scheme}://{call.request.host}{call.request.path}"
    problem = _assertion_problem(authority, form.get("assertion", ""), audience)
    if problem is not None:
        authority.refused_grants += 1
        return _oauth_error(400, "invalid_grant", problem)
    return await send_json(call, {"access_token": authority.issue(), "expires_in": int(authority.token_lifetime_s),
                                  "token_type": "Bearer"})


def _unauthenticated(call: MockCall) -> web.Response | None:
    authority = call.request.app[AUTHORITY_KEY]
    if authority.valid(bearer_token(call)):
        return None
    authority.refused_tokens += 1
    return error_response("gemini", 401, "Request had invalid authentication credentials. Expected OAuth 2 access "
                                         "token, login cookie or other valid authentication credential.")


async def google_model(call: MockCall) -> web.StreamResponse:
    """`.../publishers/google/models/{model}:{method}`."""
    problem = _unauthenticated(call)
    if problem is not None:
        return problem
    model, _, method = call.request.match_info["call"].rpartition(":")
    handler = _predict if method == "predict" else mock_gemini.method_handler(method)
    if handler is None or not model:
        return error_response("gemini", 404, f"method {method!r} is not found for publishers/google/models/{model}")
    if call.body_invalid or not isinstance(call.body, dict):
        return error_response("gemini", 400, "Invalid JSON payload received. Expected an object.")
    return await handler(call, model, call.body)


async def _predict(call: MockCall, model: str, body: dict[str, Any]) -> web.StreamResponse:
    """`:predict` of a text-embedding model: one prediction per instance, with its token count."""
    instances = body.get("instances")
    if not isinstance(instances, list) or not instances:
        return error_response("gemini", 400, "instances: at least one instance is required")
    parameters = body.get("parameters")
    dims = (parameters.get("outputDimensionality") if isinstance(parameters, dict) else None) \
        or call.state.settings.embedding_dims
    predictions = []
    for instance in instances:
        text = instance.get("content") if isinstance(instance, dict) else None
        if not isinstance(text, str):
            return error_response("gemini", 400, "instances[].content: a string is required")
        predictions.append({"embeddings": {"values": content.embedding_vector(text, dims),
                                           "statistics": {"token_count": content.text_tokens(text),
                                                          "truncated": False}}})
    return await send_json(call, {"predictions": predictions, "metadata": {"billableCharacterCount": 0}})


async def anthropic_model(call: MockCall) -> web.StreamResponse:
    """`.../publishers/anthropic/models/{model}:rawPredict|streamRawPredict`."""
    problem = _unauthenticated(call)
    if problem is not None:
        return problem
    model, _, method = call.request.match_info["call"].rpartition(":")
    body = call.body
    if method not in ("rawPredict", "streamRawPredict") or not model:
        return error_response("anthropic", 404, f"method {method!r} is not found for publishers/anthropic/models/{model}")
    if call.body_invalid or not isinstance(body, dict):
        return error_response("anthropic", 400, "expected a JSON object")
    if body.get("anthropic_version") != VERTEX_ANTHROPIC_VERSION:
        return error_response("anthropic", 400, f"anthropic_version: must be {VERTEX_ANTHROPIC_VERSION!r}")
    fields = {name: value for name, value in body.items() if name != "anthropic_version"}
    if model == "count-tokens":
        call.body = fields
        return await mock_anthropic.authenticated_count_tokens(call)
    if "model" in fields:
        return error_response("anthropic", 400, "model: Extra inputs are not permitted (the model is in the URL)")
    if (method == "streamRawPredict") != (fields.get("stream") is True):
        return error_response("anthropic", 400, f"{method}: 'stream' must be {method == 'streamRawPredict'}")
    call.body = {**fields, "model": model}
    return await mock_anthropic.authenticated_messages(call)


async def _register(request: web.Request) -> web.Response:
    data = await request.json()
    try:
        key = serialization.load_pem_public_key(str(data["public_key"]).encode())
    except (KeyError, ValueError, TypeError) as exc:
        return web.json_response({"error": f"public_key: {exc}"}, status=400)
    if not isinstance(key, rsa.RSAPublicKey):
        return web.json_response({"error": "public_key: an RSA key is required"}, status=400)
    authority = request.app[AUTHORITY_KEY]
    authority.accounts[str(data.get("client_email"))] = key
    return web.json_response(authority.counts())


async def _settings(request: web.Request) -> web.Response:
    data = await request.json()
    lifetime = data.get("token_lifetime_s")
    if not isinstance(lifetime, int | float) or isinstance(lifetime, bool) or lifetime <= 0:
        return web.json_response({"error": "token_lifetime_s: a positive number is required"}, status=400)
    authority = request.app[AUTHORITY_KEY]
    authority.token_lifetime_s = float(lifetime)
    return web.json_response(authority.counts())


async def _counts(request: web.Request) -> web.Response:
    return web.json_response(request.app[AUTHORITY_KEY].counts())


async def _revoke(request: web.Request) -> web.Response:
    authority = request.app[AUTHORITY_KEY]
    authority.tokens.clear()
    return web.json_response(authority.counts())


def add_vertex_routes(app: web.Application) -> None:
    """Register the token endpoint, the Vertex model routes and their control routes on ``app``."""
    app[AUTHORITY_KEY] = VertexAuthority()
    router = app.router
    router.add_post("/token", endpoint(token, "gemini"))
    models = "/v1/projects/{project}/locations/{region}/publishers/{publisher}/models/{call}"
    router.add_post(models.replace("{publisher}", "google"), endpoint(google_model, "gemini"))
    router.add_post(models.replace("{publisher}", "anthropic"), endpoint(anthropic_model, "anthropic"))
    router.add_get("/_mock/vertex", _counts)
    router.add_post("/_mock/vertex/accounts", _register)
    router.add_post("/_mock/vertex/settings", _settings)
    router.add_delete("/_mock/vertex/tokens", _revoke)
