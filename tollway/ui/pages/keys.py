"""Virtual keys: list with search and filters, create (the value shown once), and a
detail page with usage meters, settings, limits, provider configs, block and delete."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from tollway.ui import forms, present
from tollway.ui.client import ApiProblem
from tollway.ui.forms import Form, FormError
from tollway.ui.pages.entity import Body, EntityPages, Kind, limits_body
from tollway.ui.session import NEW_KEY_COOKIE
from tollway.ui.web import with_query

KEYS = Kind("virtual key", "/api/governance/virtual-keys", "virtual_key", "/ui/keys")
PAGE_SIZE = 50
RECENT = 10


def month_start(now_ms: int) -> str:
    now = datetime.fromtimestamp(now_ms / 1000, timezone.utc)
    return now.strftime("%Y-%m-01T00:00:00Z")


def owner_names(teams: list[dict[str, Any]], customers: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
    return {"team": {t["id"]: t["name"] for t in teams}, "customer": {c["id"]: c["name"] for c in customers}}


def key_meters(key: dict[str, Any], now_ms: int) -> list[tuple[str | None, list[present.Meter]]]:
    """The key's own meters, then each provider config's (named by its provider)."""
    groups: list[tuple[str | None, list[present.Meter]]] = [(None, present.meters(key, now_ms))]
    groups += [(config["provider"], present.meters(config, now_ms)) for config in key["provider_configs"]]
    return groups


def create_body(form: Form) -> Body:
    body: Body = {"name": form.get("name"), "description": form.get("description"),
                  "allowed_models": forms.split_list(form.get("allowed_models")),
                  "is_active": not form.checked("blocked"), **forms.owner(form), **_tags_body(form)}
    if form.get("id"):
        body["id"] = form.get("id")
    limits = {name: value for name, value in limits_body(form).items() if value is not None}
    return body | limits


def details_body(form: Form) -> Body:
    return {"name": form.get("name"), "description": form.get("description"),
            "allowed_models": forms.split_list(form.get("allowed_models")), **forms.owner(form),
            "expires_at": form.get("expires_at") or None, **_tags_body(form)}


def _tags_body(form: Form) -> Body:
    """The key's allowed and forced request tags (comma-separated fields; empty: none)."""
    return {"allowed_tags": forms.split_list(form.get("allowed_tags")),
            "forced_tags": forms.split_list(form.get("forced_tags"))}


# The rotate button's choices: how long the replaced value keeps working.
GRACE_CHOICES = (("0s", "stops at once"), ("15m", "15 minutes"), ("1h", "1 hour"), ("1d", "1 day"), ("1w", "1 week"))


def lifecycle(key: dict[str, Any], now_ms: int) -> dict[str, Any]:
    """Whether the key has expired and until when a value replaced by a rotation still works (None: none does)."""
    expires, previous = present.parse_iso(key.get("expires_at")), present.parse_iso(key.get("previous_value_expires_at"))
    now = datetime.fromtimestamp(now_ms / 1000, timezone.utc)
    return {"expired": expires is not None and expires <= now,
            "previous_until": key["previous_value_expires_at"] if previous is not None and previous > now else None,
            "grace_choices": GRACE_CHOICES}


class KeyPages(EntityPages):
    kind = KEYS

    def routes(self) -> list[BaseRoute]:
        return [Route("/ui/keys", self.list, methods=["GET"]),
                Route("/ui/keys", self.create, methods=["POST"]),
                Route("/ui/keys/new", self.new, methods=["GET"]),
                Route("/ui/keys/{ident}/created", self.created, methods=["GET"]),
                *self.entity_routes(),
                Route("/ui/keys/{ident}/details", self.update_details, methods=["POST"]),
                Route("/ui/keys/{ident}/providers", self.update_providers, methods=["POST"]),
                Route("/ui/keys/{ident}/active", self.set_active, methods=["POST"]),
                Route("/ui/keys/{ident}/rotate", self.rotate, methods=["POST"])]

    async def list(self, request: Request) -> Response:
        query = request.query_params
        offset = int(query["offset"]) if query.get("offset", "").isdigit() else 0
        status = query.get("status", "")
        params = {"search": query.get("search"), "team_id": query.get("team_id"),
                  "customer_id": query.get("customer_id"), "limit": PAGE_SIZE, "offset": offset,
                  "is_active": {"active": True, "blocked": False}.get(status)}
        (teams, customers), answer = await asyncio.gather(self.ui.owners(),
                                                          self.ui.api.get(KEYS.api, params))
        now_ms = self.ui.now_ms()
        rows = [(key, present.meters(key, now_ms)) for key in answer["virtual_keys"]]
        filters = {name: query.get(name, "") for name in ("search", "team_id", "customer_id", "status")}
        return self.ui.page(
            request, "keys.html", title="Virtual keys", rows=rows, count=answer["count"], offset=offset,
            page_size=PAGE_SIZE, filters=filters, teams=teams, customers=customers,
            names=owner_names(teams, customers),
            prev_url=with_query("/ui/keys", **filters, offset=max(0, offset - PAGE_SIZE)) if offset else None,
            next_url=(with_query("/ui/keys", **filters, offset=offset + PAGE_SIZE)
                      if offset + PAGE_SIZE < answer["count"] else None))

    async def new(self, request: Request, status: int = 200, **extra: Any) -> Response:
        teams, customers = await self.ui.owners()
        preset = {"owner": request.query_params.get("owner", "")}
        return self.ui.page(request, "key_new.html", status, title="New virtual key", teams=teams,
                            customers=customers, preset=preset, **extra)

    async def create(self, request: Request) -> Response:
        form = await self.ui.form(request)
        try:
            answer = await self.ui.api.post(KEYS.api, create_body(form))
        except FormError as error:
            problem = error.problem
        except ApiProblem as problem_:
            problem = problem_
        else:
            return self.redirect_to_created(request, answer["virtual_key"])
        return await self.new(request, problem.status, problem=problem, section="create",
                              action="create the key", values=form.values())

    def redirect_to_created(self, request: Request, key: dict[str, Any], **extra: str) -> Response:
        """POST/redirect/GET: the value travels to the page that shows it in a sealed,
        session-bound, short-lived cookie, so reloading that page cannot create a second key."""
        response = self.ui.redirect(KEYS.url(key["id"]) + "/created")
        sessions = self.ui.sessions
        if sessions is not None:
            sealed = sessions.seal_new_key(self.ui.session(request), {
                name: key[name] for name in ("id", "name", "value", "value_prefix")} | extra)
            # No max-age: a browser-session cookie, not written to disk; the seal expires by itself.
            response.set_cookie(NEW_KEY_COOKIE, sealed, path="/ui/keys", httponly=True, samesite="strict")
        return response

    async def created(self, request: Request) -> Response:
        """The new key's value, the one time: the cookie is consumed by this page."""
        ident = request.path_params["ident"]
        sessions = self.ui.sessions
        key = sessions.open_new_key(self.ui.session(request), request.cookies.get(NEW_KEY_COOKIE)) if sessions else None
        if key is None or key.get("id") != ident:
            return self.ui.redirect(KEYS.url(ident), "The key's value was shown once, when it was created, and cannot "
                                    "be shown again. If it was lost, create a new key and delete this one.", "warn")
        response = self.ui.page(request, "key_created.html", title="Virtual key created", key=key)
        response.delete_cookie(NEW_KEY_COOKIE, path="/ui/keys")
        return response

    async def detail(self, request: Request, ident: str, status: int = 200, **extra: Any) -> Response:
        api = self.ui.api
        now_ms = self.ui.now_ms()
        key = (await api.get(KEYS.api_url(ident)))["virtual_key"]
        (teams, customers), providers, month, recent = await asyncio.gather(
            self.ui.owners(), self.ui.providers(),
            api.get("/api/usage/spend", {"virtual_key_id": ident, "start": month_start(now_ms)}),
            api.get("/api/logs", {"virtual_key_id": ident, "limit": RECENT}))
        configs = {config["provider"]: config for config in key["provider_configs"]}
        explain = await self.explain(request, ident)
        names = [p["name"] for p in providers if p["configured"]]
        names += [name for name in configs if name not in names]
        return self.ui.page(
            request, "key.html", status, title=key["name"], key=key, groups=key_meters(key, now_ms),
            teams=teams, customers=customers, names=owner_names(teams, customers), provider_names=names,
            configs=configs, month=month["total"], recent=recent["logs"], recent_count=recent["count"],
            explain=explain, lifecycle=lifecycle(key, now_ms), **extra)

    async def explain(self, request: Request, ident: str) -> dict[str, Any] | None:
        """The explain panel's answer, when its form (a GET: it changes nothing) asked:
        what would a request to the model get now, and which limit binds."""
        query = request.query_params
        model = query.get("explain_model", "").strip()
        if not model:
            return None
        ask: dict[str, Any] = {"virtual_key_id": ident, "model": model}
        for name in ("prompt_tokens", "completion_tokens"):
            value = query.get(f"explain_{name}", "").strip()
            if value:
                ask[name] = value
        try:
            return {"ask": ask, "answer": await self.ui.api.post("/api/governance/explain", ask), "problem": None}
        except ApiProblem as problem:
            if problem.status not in (400, 422):
                raise
            return {"ask": ask, "answer": None, "problem": problem}

    async def update_details(self, request: Request) -> Response:
        ident = request.path_params["ident"]

        async def send(body: Body) -> Any:
            return await self.ui.api.put(KEYS.api_url(ident), body)

        return await self.apply(request, "details", "save the key", details_body, send, "Key saved.")

    async def update_providers(self, request: Request) -> Response:
        ident = request.path_params["ident"]

        async def send(body: Body) -> Any:
            try:
                return await self.ui.api.put(KEYS.api_url(ident), body)
            except ApiProblem as problem:
                raise forms.name_configs(problem, body["provider_configs"]) from None

        return await self.apply(request, "providers", "save the provider configs",
                                lambda form: {"provider_configs": forms.provider_configs(form)}, send,
                                "Provider configs saved.")

    async def set_active(self, request: Request) -> Response:
        ident = request.path_params["ident"]
        form = await self.ui.form(request)
        active = form.get("is_active") == "true"
        try:
            await self.ui.api.put(KEYS.api_url(ident), {"is_active": active})
        except ApiProblem as problem:
            if problem.status == 404:
                raise
            return self.ui.redirect(KEYS.url(ident), f"Could not change the key: {problem.message}", "error")
        message = ("Key unblocked: it can be used again." if active
                   else "Key blocked: requests with it are refused (403 virtual_key_blocked).")
        return self.ui.redirect(KEYS.url(ident), message)

    async def rotate(self, request: Request) -> Response:
        """A new value, shown once on the same page as a new key's; the old one works for the grace chosen."""
        ident = request.path_params["ident"]
        form = await self.ui.form(request)
        try:
            answer = await self.ui.api.post(KEYS.api_url(ident) + "/rotate", {"grace_period": form.get("grace_period")})
        except ApiProblem as problem:
            if problem.status == 404:
                raise
            return self.ui.redirect(KEYS.url(ident), f"Could not rotate the key: {problem.message}", "error")
        key = answer["virtual_key"]
        return self.redirect_to_created(request, key, rotated="yes", previous_until=key["previous_value_expires_at"] or "")
