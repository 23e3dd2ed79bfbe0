"""The ``covseg`` command line: one sub-command per user task (see ``covseg --help``)."""

# Each import registers that module's commands on the app.
from covseg.cli import (  # noqa: F401
    agreement,
    challenge,
    demo,
    evaluate,
    export,
    fingerprint,
    phantom,
    predict,
    pseudo_label,
    quantify,
    rank,
    serve,
    submit,
    train,
    version,
    worker,
)
from covseg.cli._app import app


def main() -> None:
    """Entry point of the ``covseg`` console script."""
    app()
