"""Logging in with the admin token or a scoped admin token (``twa-…``), and out. A
scoped token's session acts with its role and scope on every page (the API enforces
them; the pages hide what the role cannot do)."""

from __future__ import annotations

import math

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from tollway.api.principal import BOOTSTRAP_ID
from tollway.ui.client import ApiProblem
from tollway.ui.login_throttle import LoginThrottle
from tollway.ui.session import COOKIE
from tollway.ui.web import Ui

_CHECK = "/api/admin-tokens/self"  # the API itself decides whether the token is right, and says whose it is


def safe_next(target: str | None) -> str:
    """Where to go after logging in: a UI path only, never another site."""
    if target and target.startswith("/ui") and not target.startswith("//") and "\\" not in target:
        return target
    return "/ui/"


class AuthPages:
    def __init__(self, ui: Ui, throttle: LoginThrottle) -> None:
        self.ui = ui
        self.throttle = throttle

    def routes(self) -> list[BaseRoute]:
        return [Route("/ui/login", self.login_form, methods=["GET"]),
                Route("/ui/login", self.login, methods=["POST"]),
                Route("/ui/logout", self.logout, methods=["POST"])]

    async def login_form(self, request: Request) -> Response:
        if getattr(request.state, "ui_session", None) is not None:
            return self.ui.redirect(safe_next(request.query_params.get("next")))
        return self._page(request, None, safe_next(request.query_params.get("next")))

    def _page(self, request: Request, error: str | None, next_url: str, status: int = 200) -> Response:
        disabled = self.ui.sessions is None
        return self.ui.page(request, "login.html", status, title="Log in", error=error, disabled=disabled,
                            next=next_url)

    async def login(self, request: Request) -> Response:
        form = await self.ui.form(request, check_token=False)
        sessions = self.ui.sessions
        next_url = safe_next(form.get("next"))
        if sessions is None:
            return self._page(request, None, next_url, 503)
        token = form.get("token")
        if not token:
            return self._page(request, "Enter the admin token (the gateway's admin_token setting).", next_url, 400)
        host = request.client.host if request.client else None
        wait_s = self.throttle.wait_s(host)
        if wait_s > 0:  # refused before the token is looked at: a throttled guess learns nothing
            return self._throttled(request, next_url, wait_s)
        try:
            me = (await self.ui.api.request("GET", _CHECK, token=token))["admin_token"]
        except ApiProblem as problem:
            if problem.status in (401, 403):
                self.throttle.failed(host)
                return self._page(request, "That is not the admin token of this gateway. Scoped admin tokens "
                                                 "(twa-…) work too, unless revoked.", next_url, 401)
            return self._page(request, f"The gateway could not check the token: {problem.message}", next_url,
                              problem.status)
        self.throttle.succeeded(host)
        scoped = me["id"] != BOOTSTRAP_ID
        cookie, _ = sessions.issue(me["id"], me["role"]) if scoped else sessions.issue()
        response = self.ui.redirect(next_url)
        response.set_cookie(COOKIE, cookie, max_age=sessions.ttl_s, path="/ui", httponly=True, samesite="strict",
                            secure=request.url.scheme == "https")
        return response

    def _throttled(self, request: Request, next_url: str, wait_s: float) -> Response:
        seconds = math.ceil(wait_s)
        response = self._page(request, f"Too many failed logins: try again in {seconds} s.", next_url, 429)
        response.headers["Retry-After"] = str(seconds)
        return response

    async def logout(self, request: Request) -> Response:
        await self.ui.form(request)
        if self.ui.sessions is not None:
            self.ui.sessions.revoke(self.ui.session(request))
        response = self.ui.redirect("/ui/login", "You are logged out.")
        response.delete_cookie(COOKIE, path="/ui")
        return response
