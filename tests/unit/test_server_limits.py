"""The server's limits from the configuration: the connection cap fits the open-file
limit, durations are checked, and unpriced model names do not flood the log."""

from __future__ import annotations

import logging
import resource

import pytest
from pydantic import ValidationError

from tollway.config.schema import ServerConfig
from tollway.pricing import PriceCatalog
from tollway.server.serving import connection_limits


@pytest.mark.parametrize(("fd_limit", "configured", "cap"), [
    (1024, 10_000, 480),  # half of what the reserve leaves: each client connection may need an upstream one
    (1_048_576, 10_000, 10_000),
    (100, 10_000, 18),
    (64, 10_000, 16),  # never below 16
    (resource.RLIM_INFINITY, 20_000, 20_000),
])
def test_the_connection_cap_fits_the_open_file_limit(fd_limit: int, configured: int, cap: int) -> None:
    limits = connection_limits(ServerConfig(max_connections=configured), fd_limit)
    assert limits.max_connections == cap
    assert (limits.max_head_bytes, limits.head_timeout_s, limits.body_timeout_s) == (65536, 10.0, 30.0)


@pytest.mark.parametrize(("field", "value"), [
    ("header_read_timeout", "1M"), ("keep_alive_timeout", "2h"), ("body_read_timeout", "soon"),
    ("max_request_head_bytes", 100), ("max_connections", 0),
])
def test_bad_server_settings_are_refused_by_name(field: str, value: object) -> None:
    with pytest.raises(ValidationError) as error:
        ServerConfig(**{field: value})
    assert field in str(error.value)


def test_unpriced_model_names_are_logged_a_bounded_number_of_times(caplog: pytest.LogCaptureFixture) -> None:
    catalog = PriceCatalog(logger=logging.getLogger("test.pricing"))
    with caplog.at_level(logging.WARNING, logger="test.pricing"):
        for i in range(500):
            assert catalog.price_for("openai", "openai", f"made-up-{i}") is None
    assert 40 <= len(caplog.records) <= 60
    assert "no longer logged one by one" in caplog.records[-1].getMessage()
