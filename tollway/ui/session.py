"""Admin UI sessions: an opaque, signed, expiring cookie, and a form token against CSRF.

The cookie carries no secret, only ``expires.nonce.signature`` (with a scoped admin
token: ``expires.nonce.token_id.role.signature``, the token's id and role, never its
value; the API checks on every call that the token is still live); the signature is keyed
by a key derived from the admin token, so every worker process verifies it without
shared state, and changing the admin token ends every session. Logging out revokes
the session in the process that served it and clears the cookie.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

COOKIE = "tollway_ui_session"
FLASH_COOKIE = "tollway_ui_flash"
# Carries a just-created key's value from the create POST to the one page that shows it.
NEW_KEY_COOKIE = "tollway_ui_new_key"
NEW_KEY_TTL_S = 300
DEFAULT_TTL_S = 12 * 3600


@dataclass(frozen=True, slots=True)
class Session:
    nonce: str
    expires: int
    token_id: str | None = None  # the scoped admin token logged in with; None: the bootstrap admin token
    role: str = "admin"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Sessions:
    """Issues and checks session cookies, form tokens and signed flash messages."""

    def __init__(self, admin_token: str, ttl_s: int = DEFAULT_TTL_S,
                 clock: Callable[[], float] = time.time) -> None:
        self._key = hmac.new(admin_token.encode(), b"tollway-ui-session-v1", hashlib.sha256).digest()
        self.ttl_s = ttl_s
        self._clock = clock
        self._revoked: dict[str, int] = {}

    def _sign(self, purpose: str, text: str) -> str:
        return _b64(hmac.new(self._key, f"{purpose}:{text}".encode(), hashlib.sha256).digest())

    def issue(self, token_id: str | None = None, role: str = "admin") -> tuple[str, Session]:
        """A new session (of the scoped token ``token_id`` with ``role``) and its cookie value."""
        session = Session(secrets.token_urlsafe(18), int(self._clock()) + self.ttl_s, token_id, role)
        text = f"{session.expires}.{session.nonce}"
        if token_id is not None:
            text += f".{token_id}.{role}"
        return f"{text}.{self._sign('session', text)}", session

    def verify(self, cookie: str | None) -> Session | None:
        """The session a cookie names, when it is genuine, current and not revoked."""
        if not cookie:
            return None
        text, _, signature = cookie.rpartition(".")
        parts = text.split(".")
        if len(parts) not in (2, 4) or not all(parts) or not parts[0].isdigit() or not signature:
            return None
        if not hmac.compare_digest(signature, self._sign("session", text)):
            return None
        expires, nonce = int(parts[0]), parts[1]
        if expires <= self._clock() or nonce in self._revoked:
            return None
        if len(parts) == 4:
            return Session(nonce, expires, parts[2], parts[3])
        return Session(nonce, expires)

    def revoke(self, session: Session) -> None:
        now = self._clock()
        self._revoked = {nonce: until for nonce, until in self._revoked.items() if until > now}
        self._revoked[session.nonce] = session.expires

    def form_token(self, session: Session) -> str:
        """The token every form of this session carries (checked on each POST)."""
        return self._sign("csrf", session.nonce)

    def form_token_valid(self, session: Session, token: str) -> bool:
        return hmac.compare_digest(token.encode(), self.form_token(session).encode())

    def seal_flash(self, kind: str, message: str) -> str:
        text = _b64(f"{kind}\n{message}".encode())
        return f"{text}.{self._sign('flash', text)}"

    def seal_new_key(self, session: Session, key: dict[str, str]) -> str:
        """A just-created key (id, name, value, value_prefix) for this session's next page,
        valid for `NEW_KEY_TTL_S`: the create POST redirects, and the page it redirects to
        shows the value once (a reload finds the cookie gone)."""
        expires = int(self._clock()) + NEW_KEY_TTL_S
        text = _b64(json.dumps({**key, "expires": expires}).encode())
        return f"{text}.{self._sign('new-key:' + session.nonce, text)}"

    def open_new_key(self, session: Session, value: str | None) -> dict[str, str] | None:
        """The key `seal_new_key` sealed for this session, while it is current."""
        if not value:
            return None
        text, _, signature = value.partition(".")
        if not hmac.compare_digest(signature, self._sign("new-key:" + session.nonce, text)):
            return None
        try:
            key = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        except ValueError:
            return None
        if not isinstance(key, dict) or not isinstance(key.get("expires"), int) or key["expires"] <= self._clock():
            return None
        return key

    def open_flash(self, value: str | None) -> tuple[str, str] | None:
        if not value:
            return None
        text, _, signature = value.partition(".")
        if not hmac.compare_digest(signature, self._sign("flash", text)):
            return None
        try:
            kind, _, message = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode().partition("\n")
        except ValueError:
            return None
        return kind, message
