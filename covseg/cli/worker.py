"""``covseg worker``: evaluate the platform's queued submissions."""

from __future__ import annotations

from pathlib import Path

import typer

from covseg.cli._app import app


@app.command()
def worker(
    data_dir: Path = typer.Option(
        Path("covseg-data"), "--data-dir", help="The platform's data folder (queue, uploads)."
    ),
    database: str | None = typer.Option(
        None, "--database", help="Database URL; default the SQLite file in the data folder."
    ),
    threads: int = typer.Option(1, "--threads", min=1, help="Submissions evaluated at once."),
    jobs: int = typer.Option(
        1, "--jobs", min=1, help="Processes scoring the cases of one submission."
    ),
    scheduler: str | None = typer.Option(
        None, "--scheduler", help="Dask scheduler address: score cases on a cluster instead."
    ),
    stale_after: float = typer.Option(
        300.0, "--stale-after", help="Seconds without a heartbeat before work is re-queued."
    ),
    burst: bool = typer.Option(
        False, "--burst", help="Evaluate what is queued now, then exit (cron jobs, CI)."
    ),
) -> None:
    """Run evaluation workers for ``covseg serve`` (several may run, on several machines).

    Example: ``covseg worker --data-dir covseg-data --threads 2``
    """
    import logging

    from covseg.platform.config import Settings
    from covseg.platform.db import make_engine, upgrade
    from covseg.platform.tasks import make_queue

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    settings = Settings(
        data_dir=data_dir,
        database_url=database,
        workers=jobs,
        scheduler=scheduler,
        stale_after_s=stale_after,
    )
    upgrade(make_engine(settings.url))
    queue = make_queue(settings)
    recovered = queue.recover()
    if recovered:
        typer.echo(f"re-queued {len(recovered)} submission(s): {recovered}")
    if burst:
        typer.echo(f"ran {queue.drain()} task(s)")
        return
    consumer = queue.huey.create_consumer(workers=threads, worker_type="thread", periodic=True)
    consumer.run()
