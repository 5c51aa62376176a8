"""Calling a provider: retries with back-off on 429/5xx, timeouts and connection errors
turned into 504/502."""

from __future__ import annotations

import asyncio

from tollway.errors import upstream_timeout, upstream_unreachable
from tollway.providers.client import Api, ProviderClient, ProviderKey
from tollway.providers.http import UpstreamConnectError, UpstreamDisconnected, UpstreamHTTPError, UpstreamResponse

RETRIABLE = frozenset({429, 500, 502, 503, 504})
_MAX_RETRY_AFTER_S = 30.0


async def call_upstream(
    provider: ProviderClient, api: Api, model: str, body: bytes, key: ProviderKey, stream: bool
) -> UpstreamResponse:
    """The upstream response (any status) after at most ``max_retries`` retries.

    A 429 or 5xx is retried while retries remain; the last one is returned for the
    caller to pass on or fall back from. The caller must release the response.
    """
    attempts = provider.max_retries + 1
    for attempt in range(attempts):
        last = attempt == attempts - 1
        try:
            response = await provider.post(api, model, body, key, stream)
        except asyncio.TimeoutError:  # UpstreamTimeout included: it is one
            if last:
                raise upstream_timeout(provider.name) from None
            await asyncio.sleep(_backoff(provider, attempt, None))
            continue
        except UpstreamHTTPError as exc:
            if last:
                raise upstream_unreachable(provider.name, _reason(exc)) from None
            await asyncio.sleep(_backoff(provider, attempt, None))
            continue
        if response.status in RETRIABLE and not last:
            retry_after = response.headers.get("retry-after")
            response.release()
            await asyncio.sleep(_backoff(provider, attempt, retry_after))
            continue
        return response
    raise AssertionError("unreachable")  # the loop always returns or raises


async def read_whole(provider: ProviderClient, response: UpstreamResponse) -> bytes:
    """The whole body of a response that is not relayed as a stream; the response is
    released. A body cut short raises the 502, a late one the 504, of a failed call."""
    try:
        data = await response.read()
    except asyncio.TimeoutError:  # UpstreamTimeout included
        response.close()
        raise upstream_timeout(provider.name) from None
    except UpstreamHTTPError as exc:
        response.close()
        raise upstream_unreachable(provider.name, f"the response was cut short ({_reason(exc)})") from None
    response.release()
    return data


def _backoff(provider: ProviderClient, attempt: int, retry_after: str | None) -> float:
    delay = provider.retry_backoff_s * (2**attempt)
    if retry_after:
        try:
            delay = max(delay, min(float(retry_after), _MAX_RETRY_AFTER_S))
        except ValueError:
            pass
    return delay


def _reason(exc: UpstreamHTTPError) -> str:
    if isinstance(exc, UpstreamConnectError):  # the reason says which: refused, DNS, TLS, the proxy's answer
        return f"cannot connect to {exc.host}:{exc.port}" + (f" ({exc.reason})" if exc.reason else "")
    if isinstance(exc, UpstreamDisconnected):
        return "the server closed the connection"
    return str(exc) or type(exc).__name__
