"""Which routes the gateway answers without their area's full governance, and why: the
one list of exemptions (docs/routes.md shows it; tests/integration/test_route_governance.py
fails for a route that is neither governed nor listed here).

Governance by area:

- model routes (``/v1/...``, ``/chat/completions``): identity (the virtual key), limits
  (request, token, budget, concurrency, reserved before the call) and accounting (settled
  on every level, a request-log row naming the route);
- the management API (``/api/...``): the admin token;
- the admin UI (``/ui/...``): a login session.

Routes are written ``METHOD /path``, ``{id}`` standing for a path segment and a final
``*`` for everything below a prefix.
"""

from __future__ import annotations

from dataclasses import dataclass

IDENTITY = "identity"
LIMITS = "limits"
ACCOUNTING = "accounting"
_ALL = (IDENTITY, LIMITS, ACCOUNTING)


@dataclass(frozen=True, slots=True)
class Exemption:
    """A route that goes without some of its area's governance (``skips``), and why."""

    route: str
    skips: tuple[str, ...]
    why: str


_MODELS_WHY = ("answered from the gateway's own model catalog, without calling a provider: nothing to meter or "
               "charge; identity still applies (a key lists only the models it may use, an unknown key gets 401)")

EXEMPTIONS: tuple[Exemption, ...] = (
    Exemption("GET /health", _ALL, "liveness and readiness for load balancers and orchestrators; answers the "
              "status of the database and counters only"),
    Exemption("GET /metrics", _ALL, "Prometheus scrapes; aggregate counters only (restrict it at the network, like "
              "any exporter)"),
    Exemption("GET /v1/models", (LIMITS, ACCOUNTING), _MODELS_WHY),
    Exemption("GET /models", (LIMITS, ACCOUNTING), _MODELS_WHY),
    Exemption("GET /v1/models/{id}", (LIMITS, ACCOUNTING), _MODELS_WHY),
    Exemption("GET /v1/tollway/key", (LIMITS, ACCOUNTING), "tells a key's holder where its own limits stand, "
              "from the counters the gateway holds, without calling a provider: nothing to meter or charge; "
              "identity still applies (no key, an unknown, blocked or expired key gets 401/403)"),
    Exemption("GET /api/openapi.json", (IDENTITY,), "the management API's description; no data"),
    Exemption("GET /api/docs", (IDENTITY,), "the management API's reference page; no data"),
    Exemption("GET /api/docs/assets/*", (IDENTITY,), "the reference pages' scripts and styles (served locally, "
              "not from a CDN)"),
    Exemption("GET /api/redoc", (IDENTITY,), "the management API's reference page; no data"),
    Exemption("GET /ui/login", (IDENTITY,), "the login form"),
    Exemption("POST /ui/login", (IDENTITY,), "checks the admin token itself, throttled per address "
              "(`login_throttle`)"),
    Exemption("GET /ui/static/*", (IDENTITY,), "the UI's stylesheets and scripts"),
)

EXEMPT_ROUTES = frozenset(exemption.route for exemption in EXEMPTIONS)


def exemption_table() -> str:
    """The exemptions as a Markdown table (docs/routes.md embeds it; a docs test compares)."""
    rows = ["| route | goes without | why |", "|---|---|---|"]
    rows += [f"| `{e.route}` | {', '.join(e.skips)} | {e.why} |" for e in EXEMPTIONS]
    return "\n".join(rows)
