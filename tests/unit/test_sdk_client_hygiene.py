"""The tests make their async SDK clients through tests/support/sdk_clients.py, which closes
them on the test's own loop. One made directly and dropped unclosed is closed by the garbage
collector on whichever loop runs in the collecting thread — a test gateway's — and that hung
CI runs (the module's docstring tells how)."""

from __future__ import annotations

import re
from pathlib import Path

_TESTS = Path(__file__).resolve().parent.parent
_DIRECT = re.compile(r"\b(?:openai\.AsyncOpenAI|anthropic\.AsyncAnthropic|AsyncAzureOpenAI)\(")
_ALLOWED = {"support/sdk_clients.py", "unit/test_sdk_client_hygiene.py"}


def direct_constructions(root: Path) -> list[str]:
    found = []
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root).as_posix()
        if relative in _ALLOWED:
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if _DIRECT.search(line.split("#", 1)[0]):
                found.append(f"tests/{relative}:{number}: {line.strip()}")
    return found


def test_no_test_makes_an_async_sdk_client_directly() -> None:
    assert direct_constructions(_TESTS) == [], "use openai_client()/anthropic_client() from tests.support.sdk_clients"


def test_the_grep_finds_a_direct_construction(tmp_path: Path) -> None:
    (tmp_path / "test_x.py").write_text('client = openai.AsyncOpenAI(base_url=url, api_key="k")\n'
                                        "other = anthropic.AsyncAnthropic(base_url=url)  # a comment\n"
                                        "# openai.AsyncOpenAI( in a comment only\n")
    assert [line.split(":")[1] for line in direct_constructions(tmp_path)] == ["1", "2"]
