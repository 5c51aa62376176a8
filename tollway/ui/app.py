"""The admin UI application under `/ui`: server-rendered pages over the management API.

`create_ui_app(management, settings, clock_ms)` builds it; the gateway hands it every
request whose path is `/ui` or starts with `/ui/`. Every page but the login page and
the static files needs a session; every response forbids framing and inline scripts.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlsplit

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from tollway.asgi import Message, Receive, Scope, Send, header
from tollway.config import Settings
from tollway.ui.client import ApiProblem, ManagementClient, act_as
from tollway.ui.login_throttle import LoginThrottle
from tollway.ui.pages.alerts import AlertPages
from tollway.ui.pages.audit import AuditPages
from tollway.ui.pages.auth import AuthPages
from tollway.ui.pages.end_users import EndUserPages
from tollway.ui.pages.keys import KeyPages
from tollway.ui.pages.limit_rules import LimitRulePages
from tollway.ui.pages.limits import LimitPages
from tollway.ui.pages.logs import LogPages
from tollway.ui.pages.overview import OverviewPages
from tollway.ui.pages.owners import CustomerPages, TeamPages
from tollway.ui.pages.usage import UsagePages
from tollway.ui.session import COOKIE, Sessions
from tollway.ui.web import StaleForm, Ui

log = logging.getLogger(__name__)

_PUBLIC = ("/ui/login", "/ui/static/")
_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; object-src 'none'; "
        "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
_HEADERS = [(b"content-security-policy", _CSP.encode()), (b"x-frame-options", b"DENY"),
            (b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"same-origin")]


def _cookie(scope: Scope, name: str) -> str | None:
    raw = header(scope, b"cookie")
    if raw is None:
        return None
    for part in raw.decode("latin-1").split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return None


def _foreign_origin(scope: Scope) -> bool:
    """A POST sent by a page of another site (browsers name the origin). The host may
    also be the one a reverse proxy forwarded (``X-Forwarded-Host``)."""
    origin = header(scope, b"origin")
    if origin is None:
        return False
    if origin == b"null":
        return True
    hosts = {value.decode("latin-1") for value in (header(scope, b"host"), header(scope, b"x-forwarded-host")) if value}
    return urlsplit(origin.decode("latin-1")).netloc not in hosts


class UiApp:
    """The ASGI callable: session gate and security headers around the page routes."""

    def __init__(self, ui: Ui, login_throttle: LoginThrottle) -> None:
        self.ui = ui
        pages: list[Any] = [AuthPages(ui, login_throttle), OverviewPages(ui), KeyPages(ui), TeamPages(ui), EndUserPages(ui),
                            CustomerPages(ui), LimitPages(ui), LimitRulePages(ui), LogPages(ui), AuditPages(ui),
                            UsagePages(ui),
                            AlertPages(ui)]
        routes = [route for page in pages for route in page.routes()]
        routes.append(Mount("/ui/static", StaticFiles(packages=[("tollway.ui", "static")]), name="static"))
        self.app = Starlette(routes=routes, exception_handlers={
            ApiProblem: self._api_problem, StaleForm: self._stale_form, Exception: self._unexpected})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        static = path.startswith("/ui/static/")
        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                extra = list(_HEADERS)
                if not static:
                    extra.append((b"cache-control", b"no-store"))
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        if scope["method"] == "POST" and _foreign_origin(scope):
            refused = ("Refused: this form was sent from another site. If the gateway is behind a proxy, "
                       "let the proxy pass the Host header (or X-Forwarded-Host) through.")
            await PlainTextResponse(refused, 403)(scope, receive, send_with_headers)
            return
        sessions = self.ui.sessions
        session = sessions.verify(_cookie(scope, COOKIE)) if sessions else None
        scope.setdefault("state", {})["ui_session"] = session
        act_as(session.token_id if session is not None else None)
        if session is None and not path.startswith(_PUBLIC):
            await self._to_login(scope, receive, send_with_headers)
            return
        try:
            await self.app(scope, receive, send_with_headers)
        except Exception:
            if not started:
                raise
            # Starlette re-raises after `_unexpected` answered (and logged it): done here.

    async def _to_login(self, scope: Scope, receive: Receive, send: Send) -> None:
        target = scope["path"]
        if scope["method"] == "GET" and scope.get("query_string"):
            target += "?" + scope["query_string"].decode("latin-1")
        response: Response = RedirectResponse("/ui/login?next=" + quote(target, safe=""), status_code=303)
        if scope["method"] != "GET":
            response = self.ui.redirect("/ui/login", "Your session ended: log in again, then repeat the change.",
                                        "error")
        await response(scope, receive, send)

    async def _api_problem(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiProblem)
        if exc.status == 401:  # the session's admin token was revoked: log in again
            response = self.ui.redirect("/ui/login", f"Your admin token no longer works ({exc.message}).", "error")
            response.delete_cookie(COOKIE, path="/ui")
            return response
        return self.ui.page(request, "error.html", exc.status if exc.status >= 400 else 500, problem=exc,
                            title="Something went wrong")

    async def _stale_form(self, request: Request, exc: Exception) -> Response:
        problem = ApiProblem(403, "This form is out of date (it was opened before you logged in again, or it "
                                  "came from another site). Reload the page and submit it again.")
        return self.ui.page(request, "error.html", 403, problem=problem, title="Form out of date")

    async def _unexpected(self, request: Request, exc: Exception) -> Response:
        log.exception("admin UI: %s %s failed", request.method, request.url.path)
        problem = ApiProblem(500, f"The admin UI failed ({type(exc).__name__}); the gateway's log has the details.")
        try:
            return self.ui.page(request, "error.html", 500, problem=problem, title="Something went wrong")
        except Exception:
            return PlainTextResponse(problem.message, 500)


def create_ui_app(management: Any, settings: Settings, clock_ms: Callable[[], int]) -> UiApp:
    """The `/ui` application over the management API app ``management``."""
    token = settings.admin_token
    ui = Ui(ManagementClient(management, token), Sessions(token) if token else None, clock_ms)
    # What a limit whose mode says "default" gets, named on the limit forms.
    ui.templates.globals["governance_defaults"] = settings.governance_defaults.model_dump()
    return UiApp(ui, LoginThrottle(settings.login_throttle))
