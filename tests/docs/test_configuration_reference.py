"""docs/configuration.md is what `tollway config reference` prints from the schema, and
the generator covers every field of every configuration model."""

from __future__ import annotations

from typer.testing import CliRunner

from tests.docs.snippets import ROOT
from tollway.cli import app
from tollway.config.reference import REGENERATE, _sections, render

REFERENCE = ROOT / "docs" / "configuration.md"


def test_docs_configuration_md_matches_the_schema() -> None:
    assert REFERENCE.read_text(encoding="utf-8") == render(), (
        f"docs/configuration.md is out of date with tollway/config/schema.py: run `{REGENERATE}` (or `make docs`)")


def test_every_field_of_every_model_is_in_the_reference() -> None:
    text = render()
    sections = _sections()
    assert len(sections) >= 10
    for _paths, model in sections:
        assert f"`{model.__name__}`" in text
        for name in model.model_fields:
            assert f"| `{name}` |" in text, f"{model.__name__}.{name} is missing from the reference"


def test_the_cli_prints_the_reference() -> None:
    result = CliRunner().invoke(app, ["config", "reference"])
    assert result.exit_code == 0 and result.output == render()
