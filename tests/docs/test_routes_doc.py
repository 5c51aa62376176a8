"""docs/routes.md shows the exemption list the code enforces
(`tollway.server.route_policy.EXEMPTIONS`), and every route name the request log holds."""

from __future__ import annotations

from tests.docs.snippets import ROOT
from tollway.route_names import ROUTE_NAMES
from tollway.server.route_policy import exemption_table

ROUTES_MD = (ROOT / "docs" / "routes.md").read_text(encoding="utf-8")


def test_the_exemption_table_is_the_codes() -> None:
    start = ROUTES_MD.index("<!-- exemptions:")
    start = ROUTES_MD.index("\n", start) + 1
    end = ROUTES_MD.index("<!-- end of exemptions -->")
    assert ROUTES_MD[start:end].strip() == exemption_table(), (
        "docs/routes.md's exemptions differ from tollway/server/route_policy.py: paste exemption_table()'s output")


def test_every_route_name_is_documented() -> None:
    missing = sorted(name for name in ROUTE_NAMES if f"`{name}`" not in ROUTES_MD)
    assert not missing, f"route names missing from docs/routes.md: {missing}"
