"""Every code block of README.md and docs/*.md runs or loads as printed (see snippets.py
for the markers a block may carry and how a document's blocks share one session)."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest

from tests.docs.snippets import (
    DOCUMENTS,
    ROOT,
    RUN,
    SHELL,
    SHOWN_ONLY,
    Session,
    Snippet,
    free_port,
    snippets,
)
from tollway.config import ConfigError, settings_from_dict
from tollway.config.loader import parse_yaml
from tollway.config.schema import Settings

_ENV_REF = re.compile(r"\benv\.([A-Za-z_][A-Za-z0-9_]*)")


def _secrets_for(document: Path) -> dict[str, str]:
    """A value for every `env.NAME` the document's configurations name, as a reader sets them."""
    names = set(_ENV_REF.findall(document.read_text(encoding="utf-8")))
    return {name: f"tw-docs-test-{name.lower()}-0123456789" if name.endswith("VK") else f"docs-test-{name.lower()}-0123456789"
            for name in names}


def _session(document: Path, folder: Path) -> Session:
    bin_dir = str(Path(sys.executable).parent)  # where `tollway` and `python` are installed
    env = {"PATH": f"{bin_dir}:{os.environ.get('PATH', '/usr/bin:/bin')}", "HOME": str(folder), "LANG": "C.UTF-8",
           "NO_PROXY": "127.0.0.1,localhost", **_secrets_for(document)}
    if "PYTHONPATH" in os.environ:  # a checkout tested with another checkout's virtual environment
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    return Session(folder, env, ports={"8080": str(free_port()), "9911": str(free_port())})


def looks_like_config(raw: object) -> bool:
    return isinstance(raw, dict) and bool(raw) and all(isinstance(k, str) and k in Settings.model_fields for k in raw)


def load_yaml(session: Session, snippet: Snippet) -> None:
    raw = parse_yaml(session.localise(snippet.text))
    if snippet.marker == "fragment":
        return
    if not looks_like_config(raw):
        pytest.fail(f"{snippet.where}: YAML that is not a tollway configuration; mark it '# docs-test: fragment'")
    try:
        settings_from_dict(raw, snippet.where, environ=session.env)
    except ConfigError as exc:
        pytest.fail(f"{snippet.where}: the configuration does not load:\n{exc}")


def run_snippet(session: Session, snippet: Snippet) -> None:
    marker = snippet.marker or ""
    if marker == "skip":
        return
    if marker.startswith("file "):
        (session.folder / marker.split(None, 1)[1]).write_text(session.localise(snippet.text), encoding="utf-8")
    if snippet.language == "yaml":
        load_yaml(session, snippet)
    elif snippet.language in SHELL and marker == "background":
        session.start_background(snippet)
    elif snippet.language in SHELL and not marker.startswith("file "):
        session.run_shell(snippet)
    elif snippet.language == "python":
        session.run_python(snippet)


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda d: str(d.relative_to(ROOT)))
def test_every_block_of_the_document_runs_as_printed(document: Path, tmp_path: Path) -> None:
    session = _session(document, tmp_path)
    try:
        for snippet in snippets(document):
            if snippet.language not in RUN | SHOWN_ONLY:
                pytest.fail(f"{snippet.where}: a code block in {snippet.language or 'no language'!r}: "
                            f"label it with one of {sorted(RUN | SHOWN_ONLY)}")
            run_snippet(session, snippet)
    finally:
        session.stop_background()


def test_the_runner_fails_on_what_it_cannot_handle(tmp_path: Path) -> None:
    """A block that fails, YAML that is no configuration, a configuration that does not load:
    each is a failure, not a silent pass."""
    document = tmp_path / "bad.md"
    session = Session(tmp_path, {"PATH": os.environ["PATH"]}, ports={"8080": "1", "9911": "2"})
    cases = [("sh", "false\n"), ("yaml", "- just: a list\n"), ("yaml", "counters: {backnd: redis}\n"),
             ("python", "raise SystemExit(3)\n")]
    for language, text in cases:
        snippet = Snippet(document, 1, language, text, "")
        with pytest.raises((AssertionError, pytest.fail.Exception)):
            run_snippet(session, snippet)
    run_snippet(session, Snippet(document, 1, "sh", "# docs-test: skip (a reason)\nfalse\n", ""))
    run_snippet(session, Snippet(document, 1, "yaml", "# docs-test: fragment\n- just: a list\n", ""))


