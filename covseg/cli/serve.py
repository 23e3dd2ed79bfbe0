"""``covseg serve``: the challenge platform's web server (and, by default, an evaluation worker)."""

from __future__ import annotations

from pathlib import Path

import typer

from covseg.cli._app import app


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(8000, "--port", help="Port to listen on."),
    database: str | None = typer.Option(
        None, "--database", help="postgresql://... ; default a SQLite file in the data folder."
    ),
    data_dir: Path = typer.Option(
        Path("covseg-data"), "--data-dir", help="Uploads, ground truth and queue (never served)."
    ),
    demo: bool = typer.Option(
        False, "--demo", help="Start with a ready phantom challenge and print its log-ins."
    ),
    worker: bool = typer.Option(
        True, "--worker/--no-worker", help="Also run one evaluation worker (covseg worker)."
    ),
    session_hours: float = typer.Option(12.0, "--session-hours", help="Log-ins expire after."),
) -> None:
    """Serve the challenge platform: web pages, JSON API (docs at /api/docs).

    Example: ``covseg serve --demo`` then open http://127.0.0.1:8000
    """
    import subprocess
    import sys

    import uvicorn

    from covseg.platform.app import create_app
    from covseg.platform.config import Settings

    settings = Settings(data_dir=data_dir, database_url=database, session_hours=session_hours)
    application = create_app(settings)
    if demo:
        from covseg.platform.demo import SLUG, build_demo

        typer.echo("building the demo challenge from phantoms ...")
        logins = build_demo(settings, application.state.factory)
        typer.echo(f"demo challenge: http://{host}:{port}/challenges/{SLUG}")
        for account in logins:
            typer.echo(f"  {account.role:<12} {account.email:<26} password {account.password}")
    child = None
    if worker:
        command = [sys.executable, "-c", "from covseg.cli import main; main()", "worker"]
        command += ["--data-dir", str(settings.data_dir)]
        if database:
            command += ["--database", database]
        child = subprocess.Popen(command)
    try:
        uvicorn.run(application, host=host, port=port, log_level="info")
    finally:
        if child is not None:
            child.terminate()
            child.wait(timeout=30)
