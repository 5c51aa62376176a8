"""The admin web UI, served by the gateway at `/ui` over the management API.

Server-rendered pages (Jinja2) with a little JavaScript; every read and change goes
through the management API in-process (`client.ManagementClient`), so the UI holds no
business rules of its own. See `app.create_ui_app`.
"""

from tollway.ui.app import UiApp, create_ui_app

__all__ = ["UiApp", "create_ui_app"]
