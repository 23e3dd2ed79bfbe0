"""``covseg serve``: the challenge platform's web server (and, by default, an evaluation worker)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import typer

from covseg.cli._app import app
from covseg.cli.worker import (
    EVAL_MEMORY_MB,
    EVAL_TIMEOUT,
    MAX_UNZIPPED_MB,
    MAX_ZIP_FILES,
    MAX_ZIP_RATIO,
    SHUTDOWN_TIMEOUT_S,
    limit_settings,
)


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
    secure_cookies: bool | None = typer.Option(
        None,
        "--secure-cookies/--no-secure-cookies",
        help="Secure cookies and HSTS; default: for requests that came over HTTPS.",
    ),
    forwarded_allow_ips: str | None = typer.Option(
        None,
        "--forwarded-allow-ips",
        help="Proxies (comma-separated IPs, or '*') whose X-Forwarded-For/-Proto are trusted; "
        "default 127.0.0.1.",
    ),
    login_attempts: int = typer.Option(
        5, "--login-attempts", min=1, help="Failed log-ins of an account before back-off."
    ),
    login_attempts_per_address: int = typer.Option(
        20, "--login-attempts-per-address", min=1, help="The same for one client address."
    ),
    login_max_backoff: float = typer.Option(
        900.0, "--login-max-backoff", help="Longest wait (s) between failed log-ins."
    ),
    hash_concurrency: int = typer.Option(
        2, "--hash-concurrency", min=1, help="Password hashes at once (64 MiB each)."
    ),
    source_dirs: list[Path] | None = typer.Option(
        None,
        "--source-dir",
        help="Folder challenges created on the web may read (repeatable); "
        "default DATA_DIR/sources.",
    ),
    max_upload_mb: float = typer.Option(
        2000.0, "--max-upload-mb", help="Most MB one uploaded zip may have (cut off as it comes)."
    ),
    max_unzipped_mb: float = MAX_UNZIPPED_MB,
    max_zip_files: int = MAX_ZIP_FILES,
    max_zip_ratio: float = MAX_ZIP_RATIO,
    eval_memory_mb: int | None = EVAL_MEMORY_MB,
    eval_timeout: float = EVAL_TIMEOUT,
) -> None:
    """Serve the challenge platform: web pages, JSON API (docs at /api/docs).

    The limit options are passed on to the worker it starts. SIGTERM or SIGINT (Ctrl-C) stops
    the server and that worker (whose running evaluations go back to the queue).

    Example: ``covseg serve --demo`` then open http://127.0.0.1:8000
    """
    import os
    import signal
    import sys

    import uvicorn

    from covseg.platform.app import create_app
    from covseg.platform.config import Settings

    limits = limit_settings(
        max_unzipped_mb, max_zip_files, max_zip_ratio, eval_memory_mb, eval_timeout
    )
    settings = Settings(
        data_dir=data_dir,
        database_url=database,
        session_hours=session_hours,
        secure_cookies=secure_cookies,
        login_free_failures=login_attempts,
        login_free_failures_per_client=login_attempts_per_address,
        login_max_backoff_s=login_max_backoff,
        hash_concurrency=hash_concurrency,
        source_dirs=source_dirs or None,
        max_upload_bytes=int(max_upload_mb * 1e6),
        **limits,
    )
    application = create_app(settings)
    if demo:
        import threading

        from covseg.platform.demo_challenge import SLUG, build_demo, seed_submissions

        typer.echo("building the demo challenge from phantoms ...")
        logins = build_demo(settings, application.state.factory)
        site = f"http://{host}:{port}/challenges/{SLUG}"
        typer.echo(f"demo challenge: {site}")
        for account in logins:
            typer.echo(f"  {account.role:<15} {account.email:<35} password {account.password}")
        typer.echo(f"validation board: {site}/phases/validation/leaderboard")
        typer.echo(f"final ranking:    {site}/ranking/report.html")
        typer.echo(
            "a team's per-case results: log in as the simulated team, then "
            f"{site}/submissions; the test board: log in as the organizer"
        )

        def seed() -> None:
            try:
                seed_submissions(settings, application.state.factory, say)
                say("ready: boards, per-case results and the final ranking")
            except Exception as exc:  # one line, the server stays up
                say(f"seeding stopped: {type(exc).__name__}: {exc}")

        def say(line: str) -> None:
            typer.echo(f"demo: {line}")

        # Scoring the simulated teams takes a while: the server answers meanwhile.
        threading.Thread(target=seed, name="demo-seeding", daemon=True).start()
    child = None
    if worker:
        command = [sys.executable, "-c", "from covseg.cli import main; main()", "worker"]
        command += ["--data-dir", str(settings.data_dir), "--parent-pid", str(os.getpid())]
        options = {
            "--max-unzipped-mb": max_unzipped_mb,
            "--max-zip-files": max_zip_files,
            "--max-zip-ratio": max_zip_ratio,
            "--eval-memory-mb": eval_memory_mb,
            "--eval-timeout": eval_timeout,
            "--database": database,
        }
        for name, value in options.items():
            if value is not None:
                command += [name, str(value)]
        child = subprocess.Popen(command)
    # uvicorn shuts down on SIGTERM, then raises it again; its default action would end this
    # process before the ``finally`` below stops the worker. (The worker also stops by itself
    # when this process is gone, e.g. after SIGKILL: ``--parent-pid``.)
    signal.signal(signal.SIGTERM, _exit)
    try:
        uvicorn.run(
            application,
            host=host,
            port=port,
            log_level="info",
            proxy_headers=True,
            forwarded_allow_ips=forwarded_allow_ips,
        )
    finally:
        if child is not None:
            _stop_worker(child)


def _exit(signum: int, frame: object) -> None:
    raise SystemExit(0)


def _stop_worker(child: subprocess.Popen[bytes]) -> None:
    """SIGTERM the worker (it hands its running evaluations back), kill it if it hangs."""
    child.terminate()
    try:
        child.wait(timeout=SHUTDOWN_TIMEOUT_S + 10)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()
