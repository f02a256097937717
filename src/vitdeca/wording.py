"""Wording shared by the messages the CLI, the batch summary and the demo print."""

from __future__ import annotations


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """``n`` and ``noun`` agreeing in number: ``counted(1, "face")`` → "1 face", ``counted(3, "face")``
    → "3 faces"; ``plural`` for nouns that do not take an "s"."""
    return f"{n} {noun if n == 1 else plural or noun + 's'}"
