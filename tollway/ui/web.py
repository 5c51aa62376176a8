"""What every admin UI page shares: templates, the session, forms with their CSRF
token, redirects with a one-time message, and the lists that fill select boxes."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote, urlencode

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from tollway.config.loader import config_file_path
from tollway.config.schema import GovernanceDefaults
from tollway.ui import present
from tollway.ui.client import ApiProblem, ManagementClient
from tollway.ui.forms import MAX_FORM_BYTES, Form, problem_lines, problem_title
from tollway.ui.session import FLASH_COOKIE, Session, Sessions

LIST_LIMIT = 1000  # one page of teams, customers or providers fills a select box
# The pages each role reaches (the nav shows these; the API refuses the rest anyway).
_ALL_PAGES = ("/ui/", "/ui/usage", "/ui/keys", "/ui/teams", "/ui/customers", "/ui/end-users", "/ui/limits", "/ui/logs",
              "/ui/audit", "/ui/alerts")
PAGES_OF_ROLE = {"admin": _ALL_PAGES, "viewer": _ALL_PAGES, "usage_reader": ("/ui/usage", "/ui/end-users", "/ui/logs"),
                 "manager": ("/ui/keys", "/ui/teams", "/ui/customers")}
# Where a role lands instead of the overview, which needs what it may not read.
HOME_OF_ROLE = {"usage_reader": "/ui/usage", "manager": "/ui/keys"}


class StaleForm(Exception):
    """A POST without this session's form token (an old tab, or another site's form)."""


def _environment() -> Environment:
    env = Environment(loader=PackageLoader("tollway.ui", "templates"), autoescape=select_autoescape(["html"]),
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters |= {"money": present.money, "number": present.number, "period": present.period,
                    "when": present.when, "span": present.span, "level_name": present.level_name,
                    "seg": lambda text: quote(str(text), safe=""), "problem_lines": problem_lines,
                    "plain": present.plain, "latency": present.latency, "limit_amount": present.limit_amount}
    # config_path: where pages send operators to change what the config file manages.
    env.globals |= {"problem_title": problem_title, "entity_url": present.entity_url,
                    "config_path": config_file_path(),
                    # The limit forms name the global default; create_ui_app sets the configured one.
                    "governance_defaults": GovernanceDefaults().model_dump()}
    return env


class Ui:
    """The admin UI's shared parts, built once per gateway process."""

    def __init__(self, api: ManagementClient, sessions: Sessions | None, clock_ms: Callable[[], int]) -> None:
        self.api = api
        self.sessions = sessions
        self.clock_ms = clock_ms
        self.templates = _environment()

    def session(self, request: Request) -> Session:
        return request.state.ui_session  # type: ignore[no-any-return]

    def page(self, request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        """Render ``template`` with the layout's context (session, form token, message)."""
        flash = self.sessions.open_flash(request.cookies.get(FLASH_COOKIE)) if self.sessions else None
        session = getattr(request.state, "ui_session", None)
        role = session.role if session is not None else "admin"
        # Who may change things: the forms and edit buttons are not rendered for the others.
        base = {"role": role, "can_edit": role in ("admin", "manager"), "pages": PAGES_OF_ROLE.get(role, ()),
                "path": request.url.path, "query": request.query_params, "flash": flash,
                "csrf": self.sessions.form_token(session) if self.sessions and session else "",
                "logged_in": session is not None, "now_ms": self.clock_ms(), "problem": None,
                "values": None, "section": None, "action": ""}
        html = self.templates.get_template(template).render(base | context)
        response = HTMLResponse(html, status_code=status)
        if flash is not None:
            response.delete_cookie(FLASH_COOKIE, path="/ui")
        return response

    def redirect(self, url: str, message: str | None = None, kind: str = "ok") -> Response:
        """303 to ``url`` (after a POST), carrying ``message`` to the next page."""
        response = RedirectResponse(url, status_code=303)
        if message and self.sessions is not None:
            response.set_cookie(FLASH_COOKIE, self.sessions.seal_flash(kind, message), max_age=60, path="/ui",
                                httponly=True, samesite="strict")
        return response

    async def form(self, request: Request, *, check_token: bool = True) -> Form:
        """The posted form; refused unless it carries this session's form token."""
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_FORM_BYTES:
                raise ApiProblem(413, "the form is too large")
        form = Form.parse(body)
        if check_token:
            session = getattr(request.state, "ui_session", None)
            if self.sessions is None or session is None or not self.sessions.form_token_valid(session, form.get("_csrf")):
                raise StaleForm
        return form

    def now_ms(self) -> int:
        return self.clock_ms()

    def role(self, request: Request) -> str:
        """The role of the session's admin token (``admin`` for the bootstrap token)."""
        session = getattr(request.state, "ui_session", None)
        return session.role if session is not None else "admin"

    async def optional(self, call: Awaitable[dict[str, Any]], empty: dict[str, Any]) -> dict[str, Any]:
        """``call``'s answer, or ``empty`` when the session's role may not read it (403): a
        page part that role does not see, not an error."""
        try:
            return await call
        except ApiProblem as problem:
            if problem.status != 403:
                raise
            return empty

    async def owners(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Every team and customer (for owner and filter select boxes)."""
        teams, customers = await asyncio.gather(
            self.api.get("/api/governance/teams", {"limit": LIST_LIMIT}),
            self.api.get("/api/governance/customers", {"limit": LIST_LIMIT}))
        return teams["teams"], customers["customers"]

    async def providers(self) -> list[dict[str, Any]]:
        return (await self.api.get("/api/providers"))["providers"]


def with_query(url: str, **params: Any) -> str:
    pairs = {name: value for name, value in params.items() if value not in (None, "")}
    return f"{url}?{urlencode(pairs)}" if pairs else url


def spend_by(report: dict[str, Any]) -> dict[str | None, dict[str, Any]]:
    """A grouped spend report's rows by group."""
    return {row.get("group"): row for row in report["series"]}
