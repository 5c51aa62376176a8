"""Vertex AI's access tokens: minted from Google credentials with `google-auth`, kept,
and refreshed before they expire.

`credentials` in a vertex provider's settings is the service-account JSON itself (what
`env.NAME` holding it becomes) or the path of a file holding it; without it, Application
Default Credentials (`GOOGLE_APPLICATION_CREDENTIALS`, gcloud's login, the metadata
server). A service account's token is minted with the JWT-bearer grant at the `token_uri`
its JSON names (tests point it at the mock).

Tokens are never fetched per request: `AccessTokens` keeps one, hands it out until shortly
before it expires, then refreshes it in the background while the old one still serves. At
most one refresh runs at a time, however many requests arrive at expiry. google-auth is
synchronous: a refresh runs in a worker thread, off the event loop.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tollway.providers.adapters.base import TokenUnavailable

if TYPE_CHECKING:
    from tollway.config.schema import ProviderSettings

CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"
INSTALL_HINT = "a vertex provider needs google-auth: pip install 'tollway[vertex]'"
_TOKEN_TIMEOUT_S = 10.0
_REFRESH_AHEAD_S = 300.0  # refresh this long before expiry (half the lifetime for short-lived tokens)
_RETRY_AFTER_FAILURE_S = 2.0  # a failing token endpoint is asked again after this long, not per request
_DEFAULT_LIFETIME_S = 3600.0  # a token whose answer named no expiry

Mint = Callable[[], tuple[str, float]]
"""Fetches a new token: (token, seconds it stays valid). Blocking; run in a thread."""


def credentials_info(settings: ProviderSettings) -> dict[str, Any] | None:
    """The credentials JSON of `credentials` (inline or in a file); None: use ADC.
    Raises ValueError naming what is wrong with it."""
    text = settings.credentials
    if text is None:
        return None
    if text.lstrip().startswith("{"):
        source = "the credentials JSON"
    else:
        path = Path(text).expanduser()
        try:
            text = path.read_text()
        except OSError as exc:
            raise ValueError(f"credentials: cannot read {str(path)!r} ({exc.strerror or exc})") from None
        source = f"credentials file {str(path)!r}"
    try:
        info = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"credentials: {source} is not valid JSON ({exc})") from None
    if not isinstance(info, dict):
        raise ValueError(f"credentials: {source} must hold a JSON object (a service-account key)")
    return info


def project_of(settings: ProviderSettings) -> str:
    """`project`, else the `project_id` of the credentials JSON."""
    if settings.project:
        return settings.project
    info = credentials_info(settings) or {}
    project = info.get("project_id")
    if not isinstance(project, str) or not project:
        raise ValueError("a vertex provider needs project (its credentials name no project_id)")
    return project


def credentials_problem(settings: ProviderSettings) -> str | None:
    """What keeps the provider's credentials from being used, for the configuration check."""
    try:
        import google.auth  # noqa: F401 - only whether it is installed
    except ImportError:
        return INSTALL_HINT
    try:
        project_of(settings)
        info = credentials_info(settings)
        if info is not None:
            _load(info)  # parses the key: a broken one fails at start, not at the first request
    except ValueError as exc:
        return str(exc)
    return None


def _load(info: dict[str, Any]) -> Any:
    import google.auth
    from google.auth import exceptions

    try:
        credentials, _ = google.auth.load_credentials_from_dict(  # type: ignore[no-untyped-call]
            info, scopes=[CLOUD_PLATFORM])
    except (exceptions.GoogleAuthError, ValueError, KeyError) as exc:
        raise ValueError(f"credentials: not usable Google credentials ({exc})") from None
    return credentials


def google_mint(settings: ProviderSettings) -> Mint:
    """Mints tokens of the provider's credentials (ADC, looked up on first use, without
    `credentials`), through the provider's proxy and CA bundle."""
    info = credentials_info(settings)
    state: dict[str, Any] = {}

    def mint() -> tuple[str, float]:
        from google.auth import exceptions

        try:
            credentials = state.get("credentials")
            if credentials is None:
                credentials = state["credentials"] = _load(info) if info is not None else _default()
            credentials.refresh(_transport(settings))
        except (exceptions.GoogleAuthError, OSError, ValueError) as exc:
            raise TokenUnavailable(_reason(exc)) from None
        return credentials.token, _lifetime(credentials.expiry)

    return mint


def _default() -> Any:
    import google.auth

    credentials, _ = google.auth.default(scopes=[CLOUD_PLATFORM])
    return credentials


def _transport(settings: ProviderSettings) -> Callable[..., Any]:
    """google-auth's requests transport, bounded in time, with the provider's egress settings."""
    import requests
    from google.auth.transport.requests import Request

    session = requests.Session()
    proxy = settings.proxy
    if proxy is not None and proxy.strip().lower() in ("none", "direct"):
        session.trust_env = False  # direct, whatever HTTPS_PROXY says
    elif proxy is not None:
        session.proxies = {"http": proxy, "https": proxy}
    if settings.ca_bundle:
        session.verify = settings.ca_bundle
    request = Request(session)

    def bounded(*args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("timeout", _TOKEN_TIMEOUT_S)
        return request(*args, **kwargs)

    return bounded


def _lifetime(expiry: datetime | None) -> float:
    if expiry is None:
        return _DEFAULT_LIFETIME_S
    now = datetime.now(UTC).replace(tzinfo=None)  # google-auth keeps expiry as naive UTC
    return max((expiry.replace(tzinfo=None) - now).total_seconds(), 0.0)


def _reason(exc: Exception) -> str:
    text = str(exc.args[0]) if exc.args else type(exc).__name__
    return f"cannot get a Google access token: {text}"[:500]


class AccessTokens:
    """The current access token of one provider; see the module's docstring."""

    def __init__(self, mint: Mint, clock: Callable[[], float] = time.monotonic) -> None:
        self._mint = mint
        self._clock = clock  # monotonic seconds; tests move it
        self._token: str | None = None
        self._refresh_at = 0.0  # from here on, a refresh starts (the token still serves)
        self._expires_at = 0.0  # from here on, the token is not used
        self._refreshing: asyncio.Task[str] | None = None
        self._failed_at: float | None = None
        self._failure = ""
        self.refreshes = 0  # tokens minted (tests and metrics)

    @classmethod
    def for_settings(cls, settings: ProviderSettings, clock: Callable[[], float]) -> AccessTokens:
        return cls(google_mint(settings), clock)

    async def token(self) -> str:
        """A token valid now; raises TokenUnavailable when none can be had."""
        now = self._clock()
        token = self._token
        if token is not None and now < self._refresh_at:
            return token
        if token is not None and now < self._expires_at:  # due soon: refresh while it serves
            if not self._cooling_down(now):
                self._start_refresh()
            return token
        if self._refreshing is None and self._cooling_down(now):
            raise TokenUnavailable(self._failure)
        # shield: a request that gives up does not cancel the refresh the others wait for
        return await asyncio.shield(self._start_refresh())

    def invalidate(self, token: str) -> None:
        """The provider refused ``token`` (revoked, or expired early): mint anew next time."""
        if token == self._token:
            self._token = None
            self._refresh_at = self._expires_at = 0.0

    def _cooling_down(self, now: float) -> bool:
        return self._failed_at is not None and now < self._failed_at + _RETRY_AFTER_FAILURE_S

    def _start_refresh(self) -> asyncio.Task[str]:
        task = self._refreshing
        if task is None:
            task = self._refreshing = asyncio.get_running_loop().create_task(self._refresh())
            task.add_done_callback(_retrieve)
        return task

    async def _refresh(self) -> str:
        try:
            token, lifetime = await asyncio.to_thread(self._mint)
        except TokenUnavailable as exc:
            self._failed_at, self._failure = self._clock(), str(exc)
            raise
        except Exception as exc:  # a bug in a transport: reported like a failing endpoint
            self._failed_at, self._failure = self._clock(), _reason(exc)
            raise TokenUnavailable(self._failure) from None
        finally:
            self._refreshing = None
        now = self._clock()
        self._token, self._failed_at = token, None
        self._expires_at = now + lifetime
        self._refresh_at = self._expires_at - min(_REFRESH_AHEAD_S, lifetime / 2)
        self.refreshes += 1
        return token


def _retrieve(task: asyncio.Task[str]) -> None:
    """A background refresh that failed is reported to the next request, not logged as unretrieved."""
    if not task.cancelled():
        task.exception()
