"""SigV4 signing of Bedrock requests with botocore, and where the AWS credentials come from.

Credentials, in the order a provider's settings name them: explicit values
(`aws_access_key_id` / `aws_secret_access_key` / `aws_session_token`), a named `profile`,
or botocore's default chain (the environment, the shared files, container and instance
roles). With `role_arn` those are the source credentials of an STS `AssumeRole`, whose
temporary credentials are refreshed before they expire (botocore refreshes within 15
minutes of the expiry; the STS endpoint follows `AWS_ENDPOINT_URL_STS` like any AWS SDK).

botocore is an optional extra (`tollway[bedrock]`): `require_botocore` says so clearly at
configuration time. Resolving credentials may touch the network (STS, instance metadata),
so it runs in a thread, once, and again only when botocore says a refresh is due.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from tollway.providers.http import UpstreamHTTPError

if TYPE_CHECKING:
    from tollway.config.schema import ProviderSettings

SERVICE = "bedrock"  # the signing name of bedrock-runtime
ROLE_SESSION_NAME = "tollway"  # names the gateway's sessions in the role's CloudTrail records
_MISSING = ("a bedrock provider needs botocore, which is not installed: pip install 'tollway[bedrock]'")


class CredentialsUnavailable(UpstreamHTTPError):
    """No AWS credentials could be had for a provider (the message says why): the request
    fails as an unreachable upstream does (a 502 naming the reason), never the gateway."""


def require_botocore() -> None:
    """Raise ValueError (a configuration error) when botocore is not installed."""
    try:
        import botocore.auth  # type: ignore[import-untyped]  # noqa: F401
    except ImportError:
        raise ValueError(_MISSING) from None


def resolve_credentials(settings: ProviderSettings) -> Any:
    """The provider's botocore credentials (refreshable for an assumed role); blocking."""
    import botocore.credentials  # type: ignore[import-untyped]
    import botocore.session  # type: ignore[import-untyped]

    session = botocore.session.Session(profile=settings.profile) if settings.profile else botocore.session.Session()
    if settings.aws_access_key_id:
        source = botocore.credentials.Credentials(settings.aws_access_key_id, settings.aws_secret_access_key,
                                                  settings.aws_session_token)
    else:
        source = session.get_credentials()
    if source is None:
        where = f"profile {settings.profile!r}" if settings.profile else "the environment, the shared files or an instance role"
        raise CredentialsUnavailable(f"no AWS credentials found in {where}")
    if not settings.role_arn:
        return source
    fetcher = botocore.credentials.AssumeRoleCredentialFetcher(
        functools.partial(session.create_client, region_name=settings.region), source, settings.role_arn,
        extra_args={"RoleSessionName": ROLE_SESSION_NAME})
    return botocore.credentials.DeferredRefreshableCredentials(fetcher.fetch_credentials, "assume-role")


class SigV4Signer:
    """Signs one provider's requests; created per provider, shared by its requests."""

    def __init__(self, settings: ProviderSettings) -> None:
        self._settings = settings
        self._region = settings.region or ""
        self._credentials: Any = None
        self._lock = asyncio.Lock()

    async def _frozen(self) -> Any:
        credentials = self._credentials
        if credentials is None or getattr(credentials, "refresh_needed", _never)():
            async with self._lock:  # one resolution or refresh at a time; the others wait for it
                if self._credentials is None:
                    self._credentials = await _blocking(resolve_credentials, self._settings)
                credentials = self._credentials
                if getattr(credentials, "refresh_needed", _never)():
                    return await _blocking(credentials.get_frozen_credentials)
        return credentials.get_frozen_credentials()

    async def sign(self, method: str, url: str, headers: Mapping[str, str], body: bytes) -> dict[str, str]:
        """``headers`` with SigV4's (`Authorization`, `X-Amz-Date`, and `X-Amz-Security-Token`
        for temporary credentials) added for this exact request."""
        from botocore.auth import SigV4Auth  # type: ignore[import-untyped]
        from botocore.awsrequest import AWSRequest  # type: ignore[import-untyped]

        request = AWSRequest(method=method, url=url, data=body, headers=dict(headers))
        SigV4Auth(await self._frozen(), SERVICE, self._region).add_auth(request)
        return dict(request.headers.items())


def _never() -> bool:
    return False


async def _blocking(function: Any, *args: Any) -> Any:
    """``function(*args)`` in a thread (STS and instance metadata are network calls); any
    failure to get credentials becomes `CredentialsUnavailable`."""
    from botocore.exceptions import BotoCoreError, ClientError  # type: ignore[import-untyped]

    try:
        return await asyncio.to_thread(function, *args)
    except CredentialsUnavailable:
        raise
    except (BotoCoreError, ClientError) as exc:
        raise CredentialsUnavailable(f"AWS credentials could not be obtained: {exc}") from None
