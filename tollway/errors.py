"""Errors the gateway answers with: a status, a type and a message a person understands."""

from __future__ import annotations

import orjson


class GatewayError(Exception):
    """An error response; `body_for(api_family)` renders it in that API's error shape."""

    def __init__(self, status: int, type_: str, message: str, *, code: str | None = None, param: str | None = None,
                 headers: list[tuple[bytes, bytes]] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.type = type_
        self.message = message
        self.code = code or type_
        self.param = param
        self.headers = headers or []

    def openai_body(self) -> bytes:
        return orjson.dumps({"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}})

    def anthropic_body(self) -> bytes:
        return orjson.dumps({"type": "error", "error": {"type": self.type, "message": self.message}})


def bad_request(message: str, param: str | None = None) -> GatewayError:
    return GatewayError(400, "invalid_request_error", message, param=param, code="invalid_request")


def not_found(message: str, param: str | None = None) -> GatewayError:
    return GatewayError(404, "not_found_error", message, param=param, code="model_not_found")


def payload_too_large(limit: int) -> GatewayError:
    # Connection: close, so the rest of a body that was never read is not waited for either.
    return GatewayError(413, "request_too_large", f"request body is larger than the limit of {limit} bytes (max_body_bytes)",
                        headers=[(b"connection", b"close")])


def upstream_timeout(provider: str) -> GatewayError:
    return GatewayError(504, "upstream_timeout", f"provider {provider!r} did not answer in time", code="timeout")


def upstream_unreachable(provider: str, reason: str) -> GatewayError:
    return GatewayError(502, "upstream_unreachable", f"provider {provider!r} could not be reached: {reason}", code="bad_gateway")


def upstream_invalid(provider: str, reason: str) -> GatewayError:
    return GatewayError(502, "upstream_invalid_response",
                        f"provider {provider!r} answered something that cannot be translated: {reason}", code="bad_gateway")


def shutting_down() -> GatewayError:
    return GatewayError(503, "server_shutting_down", "the gateway is shutting down and cut this request; retry it",
                        code="shutting_down")


def governance_unavailable(reason: str) -> GatewayError:
    return GatewayError(503, "governance_unavailable",
                        f"limits cannot be checked right now (counter store unavailable: {reason}); the request was not sent",
                        code="governance_unavailable")


def key_lookup_unavailable(reason: str) -> GatewayError:
    return GatewayError(503, "governance_unavailable",
                        f"the virtual key cannot be looked up right now ({reason}); the request was not sent",
                        code="key_lookup_unavailable")


def model_unpriced(provider: str, model: str) -> GatewayError:
    """``require_price: true`` and no price is known for the model (SPEC §8)."""
    return GatewayError(400, "model_unpriced",
                        f"model {model!r} on provider {provider!r} has no known price and this gateway requires one "
                        "(require_price: true); set it in the config's pricing: section", param="model",
                        code="model_unpriced")
