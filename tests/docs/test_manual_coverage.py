"""The manual covers what the code has: every error code the gateway can answer with is in
docs/troubleshooting.md, every management route in docs/management-api.md, every
command in docs/cli.md. A code, route or command added without its documentation fails
here, naming it."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import typer

from tests.docs.snippets import ROOT
from tollway.api import errors as api_errors
from tollway.cli import app
from tollway.governance.decisions import Decision

PACKAGE = ROOT / "tollway"
DOCS = ROOT / "docs"


def _sources() -> Iterator[Path]:
    for path in sorted(PACKAGE.rglob("*.py")):
        if "testing" not in path.relative_to(PACKAGE).parts:  # the mock provider's errors are not the gateway's
            yield path


def _string(node: ast.AST | None) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _strings(node: ast.AST | None) -> list[str]:
    """A string constant, or both of `"a" if test else "b"`."""
    if isinstance(node, ast.IfExp):
        return _strings(node.body) + _strings(node.orelse)
    text = _string(node)
    return [text] if text is not None else []


def _codes_in(tree: ast.AST) -> Iterator[str]:
    """The type and code of every GatewayError(...), of every {"error": {...}} literal and
    of every dict literal shaped like an error body built in steps ("type", "message" and
    one of "code", "param", "field")."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == "GatewayError":
            if len(node.args) > 1 and _string(node.args[1]):
                yield _string(node.args[1])  # type: ignore[misc]
            yield from (_string(k.value) for k in node.keywords if k.arg == "code" and _string(k.value))  # type: ignore[misc]
        if isinstance(node, ast.Dict):
            keys = {_string(key): value for key, value in zip(node.keys, node.values, strict=True)}
            if {"type", "message"} <= keys.keys() and keys.keys() & {"code", "param", "field"}:
                yield from _strings(keys["type"]) + _strings(keys.get("code"))
            for key, value in zip(node.keys, node.values, strict=True):
                if _string(key) == "error" and isinstance(value, ast.Dict):
                    for inner_key, inner_value in zip(value.keys, value.values, strict=True):
                        if _string(inner_key) in ("type", "code"):
                            yield from _strings(inner_value)


def emitted_codes() -> set[str]:
    codes = {decision.value for decision in Decision if decision is not Decision.ALLOW}
    codes |= set(api_errors._TYPES.values())
    for path in _sources():
        codes |= set(_codes_in(ast.parse(path.read_text(encoding="utf-8"))))
    return codes


def test_every_error_code_is_in_troubleshooting() -> None:
    codes = emitted_codes()
    assert {"budget_exceeded", "upstream_timeout", "stream_interrupted", "invalid_field", "payload_too_large"} <= codes
    text = (DOCS / "troubleshooting.md").read_text(encoding="utf-8")
    missing = sorted(code for code in codes if f"`{code}`" not in text)
    assert not missing, f"error codes the gateway can answer with but docs/troubleshooting.md does not explain: {missing}"


def test_every_management_route_is_in_management_api_md() -> None:
    from tollway.api.app import create_management_app
    from tollway.config import settings_from_dict

    class Runtime:
        settings = settings_from_dict({"admin_token": "x" * 20})

    spec = create_management_app(Runtime()).openapi()  # type: ignore[arg-type]
    text = (DOCS / "management-api.md").read_text(encoding="utf-8")
    missing = [path for path in spec["paths"] if f"`{path}`" not in text and f"{path}`" not in text]
    assert not missing, f"management routes missing from docs/management-api.md: {missing}"


def _commands(group: object, prefix: str) -> Iterator[str]:
    for name, command in sorted(group.commands.items()):  # type: ignore[attr-defined]
        if hasattr(command, "commands"):  # a group (typer ships its own click)
            yield from _commands(command, f"{prefix} {name}")
        else:
            yield f"{prefix} {name}"


def test_every_command_is_in_cli_md() -> None:
    commands = list(_commands(typer.main.get_command(app), "tollway"))  # type: ignore[arg-type]
    assert "tollway keys create" in commands and "tollway config reference" in commands
    text = (DOCS / "cli.md").read_text(encoding="utf-8")
    missing = [command for command in commands if command not in text]
    assert not missing, f"commands missing from docs/cli.md: {missing}"


def test_the_manual_links_only_inside_the_project() -> None:
    import re

    for document in [ROOT / "README.md", *DOCS.glob("*.md")]:
        for target in re.findall(r"\]\(([^)]+)\)", document.read_text(encoding="utf-8")):
            if target.startswith(("http://127.0.0.1", "http://localhost")):
                continue
            assert not target.startswith(("http:", "https:", "../", "/")), f"{document.name} links outside: {target}"
            path = (document.parent / target.split("#")[0]).resolve()
            assert path.is_relative_to(ROOT) and path.exists(), f"{document.name}: broken link {target}"
