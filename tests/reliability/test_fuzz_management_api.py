"""The management API fuzzed from its own OpenAPI document with schemathesis, against
the real server on loopback: valid and invalid inputs, and for each answer no 5xx, a
documented status and content type, and a body that matches the documented schema.

The examples per operation are bounded (``TOLLWAY_FUZZ_EXAMPLES``, default 12) so that
the 46 operations take well under a minute.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.support.gateway import RunningGateway, mock_providers, start_gateway

ADMIN = "admin-token-reliability-fuzz-0123456789"
EXAMPLES = int(os.environ.get("TOLLWAY_FUZZ_EXAMPLES", "8"))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def management(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    root: Path = tmp_path_factory.mktemp("fuzz")
    governance = {"customers": [{"id": "acme", "name": "Acme"}],
                  "teams": [{"id": "search", "name": "Search", "customer_id": "acme"}],
                  "virtual_keys": [{"id": "vk-fuzz", "name": "fuzz", "value": "tw-fuzz-0123456789abcdefghij",
                                    "team_id": "search", "budget": {"max_limit": 5, "reset_duration": "1d"}}]}
    running = start_gateway({"database_url": f"sqlite:///{root}/fuzz.db", "admin_token": ADMIN,
                             "providers": mock_providers("http://127.0.0.1:9"), "governance": governance})
    yield running
    running.stop()


def _fuzz(operation, mode: GenerationMode, base_url: str) -> tuple[int, list[str]]:
    """Run ``EXAMPLES`` generated cases of one operation; (cases run, failure reports)."""
    ran = 0
    failures: list[str] = []

    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case) -> None:
        nonlocal ran
        ran += 1
        response = case.call(base_url=base_url, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=15)
        try:
            case.validate_response(response, checks=CHECKS)
        except Exception as exc:
            if len(failures) < 3:
                failures.append(f"{operation.method.upper()} {operation.path} ({mode}): {exc}")

    run()
    return ran, failures


def test_management_api_answers_every_generated_request_within_its_contract(management: RunningGateway) -> None:
    # The document is built at its first request (seconds on a busy machine): a generous bound, not requests' 10 s.
    schema = schemathesis.openapi.from_url(management.url + "/api/openapi.json", timeout=120)
    operations = [result.ok() for result in schema.get_all_operations()]
    ran = 0
    failures: list[str] = []
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            count, found = _fuzz(operation, mode, management.url)
            ran += count
            failures += found
    print(f"\nschemathesis: {ran} generated requests over {len(operations)} operations")
    assert len(operations) >= 40
    assert not failures, "\n\n".join(failures)
