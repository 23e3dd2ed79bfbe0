"""The ``covseg`` application as a whole: help texts the terminal wraps, warnings in one line."""

from __future__ import annotations

import re
import warnings

import pytest
import typer
from typer.testing import CliRunner

from covseg.cli import app
from covseg.cli._app import _one_line_warning, unwrap


def _commands(command: object, path: str = "covseg") -> list[tuple[str, object]]:
    found = [(path, command)]
    for name, sub in getattr(command, "commands", {}).items():
        found += _commands(sub, f"{path} {name}")
    return found


def test_every_help_paragraph_is_one_line() -> None:
    """Docstrings are wrapped at 100 columns in the source; the help must not keep those breaks
    (rich prints each one, mid-sentence, at any terminal width)."""
    commands = _commands(typer.main.get_command(app))
    assert len(commands) > 15
    for path, command in commands:
        for paragraph in (command.help or "").split("\n\n"):  # type: ignore[attr-defined]
            assert "\n" not in paragraph, (path, paragraph)


@pytest.mark.parametrize("width", [80, 200])
def test_help_wraps_at_the_terminal_width(width: int) -> None:
    result = CliRunner().invoke(app, ["quantify", "--help"], env={"COLUMNS": str(width)})
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert max(len(line) for line in lines) <= width
    # In the source this sentence breaks after "right_lung_ml,": at 200 columns it must not.
    text = " ".join(line.strip() for line in lines)
    assert "right_lung_ml, involvement_pct" in text
    if width == 200:
        assert any("right_lung_ml, involvement_pct" in line for line in lines)


def test_flags_show_no_value_type() -> None:
    """A flag takes no value: no `--help <bool>` (Typer shows a type for every option)."""
    root = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "120"}).output
    assert re.search(r"--help\s+Show this message", root), root
    assert "<bool>" not in root
    quantify = CliRunner().invoke(app, ["quantify", "--help"], env={"COLUMNS": "120"}).output
    assert "<bool>" not in quantify and "<path>" in quantify


def test_arguments_are_named_in_capitals_as_the_docs_write_them() -> None:
    result = CliRunner().invoke(app, ["evaluate", "--help"], env={"COLUMNS": "120"})
    assert "covseg evaluate [OPTIONS] {PRED_DIR} {TRUTH_DIR}" in result.output
    missing = CliRunner().invoke(app, ["evaluate"])
    assert missing.exit_code == 2 and "Missing argument 'PRED_DIR'" in missing.output


def test_unwrap_keeps_paragraphs_and_list_items() -> None:
    text = "Writes a\n    table.\n\n    - first\n    - second\n    goes on\n\n    Example: x"
    assert unwrap(text) == "Writes a table.\n\n- first\n- second goes on\n\nExample: x"
    assert unwrap(None) is None


def test_library_warnings_become_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    """Every command shows a library's warning as one line, without its source path."""
    assert CliRunner().invoke(app, ["version"]).exit_code == 0
    assert warnings.showwarning is _one_line_warning  # pytest restores its own after the test
    message = warnings.WarningMessage(
        "No artists with labels found to put in legend.  Note that artists\n  whose label ...",
        UserWarning,
        "/usr/lib/python3/site-packages/matplotlib/legend.py",
        1234,
    )
    _one_line_warning(
        message.message, message.category, message.filename, message.lineno, None, None
    )
    err = capsys.readouterr().err
    assert err == (
        "warning: No artists with labels found to put in legend. Note that artists whose "
        "label ...\n"
    )
