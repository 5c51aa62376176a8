"""The names a request's route has in the request log, spend reports and the UI (the
``route`` column): the API it used. docs/routes.md lists which HTTP route each names."""

from __future__ import annotations

from tollway.providers.client import Api

STORED_RESPONSE_ROUTES = ("responses.get", "responses.delete", "responses.cancel", "responses.input_items")
# Files and batches (`tollway.proxy.batch_*`; both batch APIs share the names).
BATCH_ROUTES = ("files", "files.get", "files.content", "files.delete", "batches", "batches.get", "batches.list",
                "batches.cancel", "batches.results", "batches.delete")
ROUTE_NAMES = frozenset({api.value for api in Api} | set(STORED_RESPONSE_ROUTES) | set(BATCH_ROUTES))
