"""The Typer application every ``covseg`` sub-command registers on.

Each sub-command lives in its own module of :mod:`covseg.cli` and imports heavy libraries
(torch, MONAI, SQLAlchemy...) inside the command function, so ``covseg --help`` stays fast.
"""

import typer

app = typer.Typer(
    name="covseg",
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


@app.callback()
def _root() -> None:
    """COVID-19 lung CT lesion segmentation, quantification, evaluation, ranking and hosting."""
