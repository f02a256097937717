"""errors.first_line: one line of a wrapped exception's message."""

from __future__ import annotations

from vitdeca.errors import first_line


def test_first_line_skips_blank_lines_and_strips():
    assert first_line(RuntimeError("\n  \n  shape mismatch  \n details follow\n")) == "shape mismatch"


def test_first_line_of_an_empty_message_is_the_type_name():
    assert first_line(ValueError()) == "ValueError"
    assert first_line(OSError("  \n ")) == "OSError"
