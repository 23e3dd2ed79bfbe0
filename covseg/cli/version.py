"""``covseg version``."""

import typer

from covseg import __version__
from covseg.cli._app import app


@app.command()
def version() -> None:
    """Print covseg's version.

    Example: ``covseg version``
    """
    typer.echo(__version__)
