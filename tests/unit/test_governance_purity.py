"""The pure governance modules import no web, HTTP, Redis or SQL library (README "no I/O here")."""

from __future__ import annotations

import subprocess
import sys

import pytest

PURE_MODULES = [
    "tollway.governance.durations",
    "tollway.governance.model",
    "tollway.governance.engine",
    "tollway.governance.decisions",
    "tollway.governance.inventory",
]
FORBIDDEN = ["aiohttp", "sqlalchemy", "redis", "uvicorn", "fastapi", "asyncpg", "aiosqlite", "httpx", "starlette"]


def _imported_by(module: str) -> set[str]:
    code = f"import sys, {module}; print('\\n'.join(sorted(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(result.stdout.split())


@pytest.mark.parametrize("module", PURE_MODULES)
def test_pure_governance_module_imports_no_io_library(module: str) -> None:
    loaded = _imported_by(module)
    assert module in loaded
    offending = sorted(name for name in loaded if name.split(".")[0] in FORBIDDEN)
    assert offending == [], f"{module} pulls in {offending}"


def test_the_check_sees_a_forbidden_import() -> None:
    assert "sqlalchemy" in {name.split(".")[0] for name in _imported_by("sqlalchemy")}
