"""The Typer application every ``covseg`` sub-command registers on.

Each sub-command lives in its own module of :mod:`covseg.cli` and imports heavy libraries
(torch, MONAI, SQLAlchemy...) inside the command function, so ``covseg --help`` stays fast.

Help texts are written as docstrings, wrapped at 100 columns in the source. Rich would keep
every one of those line breaks, so :class:`_Group` joins the lines of each paragraph before the
help is shown, and the terminal wraps them at its own width. It also drops the value type Typer
shows for flags (``--help <bool>``: a flag takes no value) and names arguments in capitals
(``PRED_DIR``), as the docs write them.
"""

import inspect
import warnings
from typing import Any, TextIO

import typer
from typer.core import TyperGroup


def unwrap(text: str | None) -> str | None:
    """A help text with each paragraph on one line (paragraphs: separated by a blank line).

    Lines that start a list item (``- ``, ``* ``) or are indented keep their own line.

    Examples
    --------
    >>> unwrap("First line\\n    goes on.\\n\\n    - one\\n    - two")
    'First line goes on.\\n\\n- one\\n- two'
    """
    if not text:
        return text
    paragraphs = []
    for paragraph in inspect.cleandoc(text).split("\n\n"):
        lines: list[str] = []
        for line in paragraph.splitlines():
            if lines and not line.startswith(("- ", "* ", " ", "\t", "\b")):
                lines[-1] = f"{lines[-1]} {line.strip()}"
            else:
                lines.append(line)
        paragraphs.append("\n".join(lines))
    return "\n\n".join(paragraphs)


def _tidy(command: Any) -> None:
    """Unwrap a click command's help texts and hide its flags' value type, sub-commands too.

    Duck-typed: Typer builds its commands on its own copy of click.
    """
    command.help = unwrap(command.help)
    command.short_help = unwrap(command.short_help)
    help_option = command.get_help_option(command.context_class(command))  # cached by click
    for param in [*command.params, *([help_option] if help_option else [])]:
        param.help = unwrap(getattr(param, "help", None))
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""  # Typer shows the metavar as the type: nothing for a flag
        elif param.param_type_name == "argument" and param.metavar is None and param.name:
            param.metavar = param.name.upper()  # PRED_DIR, as the docs and examples write it
    for sub in getattr(command, "commands", {}).values():
        _tidy(sub)


class _Group(TyperGroup):
    """The root group: tidies every command's help once the click commands are built."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _tidy(self)


app = typer.Typer(
    name="covseg",
    cls=_Group,
    help=(
        "COVID-19 lung CT lesion segmentation, quantification, evaluation, statistical ranking "
        "and challenge hosting (COVID-19-20)."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print one clear error line on stderr and return the ``typer.Exit`` to raise."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(code)


def _one_line_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    """Show a library's warning as one ``warning:`` line, without its source path and code."""
    text = " ".join(str(message).split()) or category.__name__
    typer.secho(f"warning: {text}", fg=typer.colors.YELLOW, err=True)


@app.callback()
def _root() -> None:
    """COVID-19 lung CT lesion segmentation, quantification, evaluation, ranking and hosting."""
    warnings.showwarning = _one_line_warning
