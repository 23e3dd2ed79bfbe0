"""The ``covseg`` command line: one sub-command per user task (see ``covseg --help``)."""

from covseg.cli import agreement, challenge, demo, evaluate, export, fingerprint, phantom, predict, pseudo_label, quantify, rank, serve, submit, train, version, worker  # noqa: F401  (each import registers its commands)
from covseg.cli._app import app


def main() -> None:
    """Entry point of the ``covseg`` console script."""
    app()
