"""Canonical model names: one spelling per model for limits, prices and allow-lists.

A requested name is normalised once (`canonical_model`): Unicode NFKC, surrounding
whitespace trimmed, and refused when it holds control, format or other invisible
characters or inner whitespace, which no model name has and which would otherwise let
one model appear under many names. Names are then compared without regard to case
(`model_key`); configured names are keyed the same way when the configuration is loaded,
so a request pays for one normalisation and one ``casefold``. Pure.
"""

from __future__ import annotations

import unicodedata


class BadModelName(ValueError):
    """The name cannot be a model's; the message says why."""


def canonical_model(name: str) -> str:
    """``name`` trimmed and NFKC-normalised; `BadModelName` when it hides characters."""
    if name.isascii() and name.isprintable():  # the common case: NFKC changes no ASCII
        text = name.strip()
    else:
        text = unicodedata.normalize("NFKC", name).strip()
        hidden = next((c for c in text if unicodedata.category(c)[0] in "CZ" and c != " "), None)
        if hidden is not None:
            raise BadModelName(f"'model' contains the invisible or control character U+{ord(hidden):04X}")
    if not text:
        raise BadModelName("'model' must be a non-empty string")
    if " " in text:
        raise BadModelName("'model' must not contain whitespace")
    return text


def model_key(name: str) -> str:
    """The form model names are compared in: without regard to case."""
    return name.casefold()


def configured_model(name: str) -> str:
    """A model config's name as it is stored: `canonical_model`'s form, so that a config
    is matched by the requests meant for it; ValueError (for validators) when no request
    could ever name it."""
    try:
        return canonical_model(name)
    except BadModelName as exc:
        raise ValueError(str(exc).replace("'model' ", "a model name ", 1)) from None
