"""The management API's documentation pages, `/api/docs` (Swagger UI) and `/api/redoc`,
served with their scripts and styles from the gateway itself: they work on a machine with
no internet access, and a browser loads nothing from a CDN.

The assets are those the `fastapi-offline` package ships (Swagger UI 5 and ReDoc 2);
only its files are used here.
"""

from __future__ import annotations

import importlib.resources

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS_URL = "/api/docs/assets"
# Nothing but the gateway: ReDoc's sidebar links a logo on its makers' CDN, which this
# keeps the browser from fetching (the link itself stays). Inline script: the pages' init.
_CSP = ("default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; font-src 'self' data:; worker-src 'self' blob:; connect-src 'self'; "
        "frame-ancestors 'none'")
_HEADERS = {"Content-Security-Policy": _CSP, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}


def _assets_directory() -> str:
    return str(importlib.resources.files("fastapi_offline") / "static")


def install_docs_pages(app: FastAPI, docs_url: str = "/api/docs", redoc_url: str = "/api/redoc") -> None:
    """Add the two pages and their assets to ``app`` (built with docs_url=None, redoc_url=None)."""
    openapi_url = app.openapi_url or "/api/openapi.json"
    app.mount(ASSETS_URL, StaticFiles(directory=_assets_directory()), name="docs-assets")

    @app.get(docs_url, include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        page = get_swagger_ui_html(
            openapi_url=openapi_url, title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{ASSETS_URL}/swagger-ui-bundle.js", swagger_css_url=f"{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS_URL}/favicon.png",
            # validatorUrl None: Swagger UI would otherwise ask validator.swagger.io about a public spec
            swagger_ui_parameters={"validatorUrl": None, "persistAuthorization": False},
        )
        page.headers.update(_HEADERS)
        return page

    @app.get(redoc_url, include_in_schema=False)
    async def redoc() -> HTMLResponse:
        page = get_redoc_html(openapi_url=openapi_url, title=f"{app.title} - ReDoc",
                              redoc_js_url=f"{ASSETS_URL}/redoc.standalone.js",
                              redoc_favicon_url=f"{ASSETS_URL}/favicon.png", with_google_fonts=False)
        page.headers.update(_HEADERS)
        return page
