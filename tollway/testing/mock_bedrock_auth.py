"""AWS authentication for the mock's Bedrock routes: SigV4 verified the way AWS verifies it,
and STS `AssumeRole` handing out temporary credentials.

The verifier is written from AWS's specification ("Create a signed AWS API request"), not
with botocore, so a gateway that signs with botocore is checked by a second, independent
implementation: the canonical request (path segments URI-encoded twice, as for every
service but S3; sorted query; lower-cased, trimmed signed headers; the body's SHA-256),
the string to sign, the HMAC chain of the signing key. The request's `X-Amz-Date` must be
within `MAX_SKEW_S` of now, the access key known, and a temporary key's session token
sent (and unexpired). Failures answer 403 in AWS's JSON error shape with
`x-amzn-ErrorType`, as bedrock-runtime does.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import parse_qsl, quote, unquote

MOCK_ACCESS_KEY_ID = "AKIATOLLWAYMOCK00001"
MOCK_SECRET_ACCESS_KEY = "tollway/mock/secret/access/key/0000000000"
MAX_SKEW_S = 300  # AWS refuses a signature more than 5 minutes from its clock
_ALGORITHM = "AWS4-HMAC-SHA256"
_AUTH = re.compile(r"AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request,\s*"
                   r"SignedHeaders=([a-z0-9;-]+),\s*Signature=([0-9a-f]{64})$")
_SPACES = re.compile(r"\s+")


class AuthFailure(Exception):
    """A request AWS would refuse: ``error_type`` is its x-amzn-ErrorType."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message


@dataclass(slots=True)
class Identity:
    secret: str
    token: str | None = None
    expires_at: float | None = None  # unix seconds (temporary credentials)


@dataclass
class AwsAccount:
    """The credentials the mock knows: the long-lived test key, and those STS issued."""

    identities: dict[str, Identity] = field(default_factory=lambda: {
        MOCK_ACCESS_KEY_ID: Identity(MOCK_SECRET_ACCESS_KEY)})
    sts_duration_s: int = 3600
    issued: list[str] = field(default_factory=list)  # access key ids issued by AssumeRole, in order

    def assume_role(self, role_arn: str, session_name: str, now: float) -> tuple[str, Identity]:
        """Fresh temporary credentials for ``role_arn``."""
        access_key = "ASIA" + secrets.token_hex(8).upper()
        identity = Identity(secrets.token_urlsafe(30), "mock-session-" + secrets.token_urlsafe(24),
                            now + self.sts_duration_s)
        self.identities[access_key] = identity
        self.issued.append(access_key)
        return access_key, identity


@dataclass(frozen=True, slots=True)
class SignedRequest:
    """What the verifier reads of a received request (the path exactly as sent)."""

    method: str
    raw_path: str  # path and query as on the request line
    headers: dict[str, str]  # lower-cased names
    body: bytes


def verify(request: SignedRequest, account: AwsAccount, service: str, now: float | None = None) -> str:
    """The access key id of a correctly signed request; raises `AuthFailure` otherwise."""
    now = time.time() if now is None else now
    authorization = request.headers.get("authorization")
    if not authorization:
        raise AuthFailure("MissingAuthenticationTokenException", "Missing Authentication Token")
    match = _AUTH.match(authorization.strip())
    if match is None:
        raise AuthFailure("IncompleteSignatureException", f"Authorization header requires 'Credential', "
                          f"'Signature' and 'SignedHeaders' parameters. Authorization={authorization[:40]}")
    access_key, day, region, signed_service, signed_headers, signature = match.groups()
    identity = account.identities.get(access_key)
    if identity is None:
        raise AuthFailure("UnrecognizedClientException", "The security token included in the request is invalid.")
    amz_date = request.headers.get("x-amz-date", "")
    _check_date(amz_date, day, now)
    _check_token(request, identity, now)
    names = signed_headers.split(";")
    if "host" not in names or "x-amz-date" not in names:
        raise AuthFailure("InvalidSignatureException", "'Host' and 'X-Amz-Date' must be signed headers.")
    if signed_service != service:
        raise AuthFailure("InvalidSignatureException", f"Credential should be scoped to correct service: '{service}'.")
    expected = signature_of(request, names, identity.secret, amz_date, region, service)
    if not hmac.compare_digest(expected, signature):
        raise AuthFailure("InvalidSignatureException", "The request signature we calculated does not match the "
                          "signature you provided. Check your AWS Secret Access Key and signing method.")
    return access_key


def _check_date(amz_date: str, day: str, now: float) -> None:
    try:
        signed_at = datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC).timestamp()
    except ValueError:
        raise AuthFailure("IncompleteSignatureException", "Date must be in ISO-8601 'basic format'. "
                          f"Got '{amz_date}'.") from None
    if not amz_date.startswith(day):
        raise AuthFailure("InvalidSignatureException", "Credential should be scoped to a valid date.")
    if abs(now - signed_at) > MAX_SKEW_S:
        raise AuthFailure("InvalidSignatureException", f"Signature expired: {amz_date} is now earlier than "
                          f"{_amz_date(now - MAX_SKEW_S)} ({_amz_date(now)} - 5 min.)")


def _check_token(request: SignedRequest, identity: Identity, now: float) -> None:
    if identity.token is None:
        return
    if request.headers.get("x-amz-security-token") != identity.token:
        raise AuthFailure("UnrecognizedClientException", "The security token included in the request is invalid.")
    if identity.expires_at is not None and now >= identity.expires_at:
        raise AuthFailure("ExpiredTokenException", "The security token included in the request is expired")


def signature_of(request: SignedRequest, signed: list[str], secret: str, amz_date: str, region: str,
                 service: str) -> str:
    """The hex SigV4 signature of ``request`` over the ``signed`` header names."""
    scope = f"{amz_date[:8]}/{region}/{service}/aws4_request"
    digest = hashlib.sha256(canonical_request(request, signed).encode()).hexdigest()
    to_sign = f"{_ALGORITHM}\n{amz_date}\n{scope}\n{digest}"
    key = ("AWS4" + secret).encode()
    for part in (amz_date[:8], region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()


def canonical_request(request: SignedRequest, signed: list[str]) -> str:
    path, _, query = request.raw_path.partition("?")
    # Every service but S3: the path as sent (already encoded once) is encoded again.
    uri = quote(_normalized(path) or "/", safe="/-_.~")
    pairs = sorted((quote(unquote(k), safe="-_.~"), quote(unquote(v), safe="-_.~"))
                   for k, v in parse_qsl(query, keep_blank_values=True))
    headers = "".join(f"{name}:{_SPACES.sub(' ', request.headers.get(name, '').strip())}\n" for name in signed)
    return "\n".join([request.method, uri, "&".join(f"{k}={v}" for k, v in pairs), headers, ";".join(signed),
                      hashlib.sha256(request.body).hexdigest()])


def _normalized(path: str) -> str:
    """The path without dot segments or empty segments, as AWS normalises it."""
    parts: list[str] = []
    for segment in path.split("/"):
        if segment in ("", "."):
            continue
        if segment == "..":
            if parts:
                parts.pop()
            continue
        parts.append(segment)
    return "/" + "/".join(parts) + ("/" if path.endswith("/") and parts else "")


def sign(request: SignedRequest, access_key: str, secret: str, region: str, service: str, at: float,
         token: str | None = None) -> dict[str, str]:
    """The headers of ``request`` signed at ``at`` (tests: a stale or wrong signature on purpose)."""
    amz_date = _amz_date(at)
    headers = {**request.headers, "x-amz-date": amz_date}
    if token is not None:
        headers["x-amz-security-token"] = token
    names = sorted(headers)
    dated = SignedRequest(request.method, request.raw_path, headers, request.body)
    signature = signature_of(dated, names, secret, amz_date, region, service)
    headers["authorization"] = (f"{_ALGORITHM} Credential={access_key}/{amz_date[:8]}/{region}/{service}/aws4_request, "
                                f"SignedHeaders={';'.join(names)}, Signature={signature}")
    return headers


def _amz_date(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y%m%dT%H%M%SZ")


def assume_role_xml(access_key: str, identity: Identity, role_arn: str, session_name: str) -> str:
    """STS's AssumeRole answer (the query protocol answers XML)."""
    expires = datetime.fromtimestamp(identity.expires_at or 0, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    account, role = "123456789012", role_arn.rsplit("/", 1)[-1]
    return (f'<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><AssumeRoleResult>'
            f"<Credentials><AccessKeyId>{access_key}</AccessKeyId><SecretAccessKey>{identity.secret}</SecretAccessKey>"
            f"<SessionToken>{identity.token}</SessionToken><Expiration>{expires}</Expiration></Credentials>"
            f"<AssumedRoleUser><AssumedRoleId>AROAMOCK:{session_name}</AssumedRoleId>"
            f"<Arn>arn:aws:sts::{account}:assumed-role/{role}/{session_name}</Arn></AssumedRoleUser>"
            f"</AssumeRoleResult><ResponseMetadata><RequestId>{secrets.token_hex(8)}</RequestId>"
            f"</ResponseMetadata></AssumeRoleResponse>")


def sts_error_xml(error_type: str, message: str) -> str:
    """An STS error (query protocol): ``<ErrorResponse><Error><Code>``..."""
    return (f'<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type>'
            f"<Code>{error_type.removesuffix('Exception')}</Code><Message>{message}</Message></Error>"
            f"<RequestId>{secrets.token_hex(8)}</RequestId></ErrorResponse>")
