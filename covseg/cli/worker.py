"""``covseg worker``: evaluate the platform's queued submissions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from covseg.cli._app import app

#: Seconds a stopping worker waits for its evaluations to hand their submissions back.
SHUTDOWN_TIMEOUT_S = 30.0


def limit_settings(
    max_unzipped_mb: float,
    max_zip_files: int,
    max_zip_ratio: float,
    eval_memory_mb: int | None,
    eval_timeout: float,
) -> dict[str, Any]:
    """The evaluation limits as :class:`~covseg.platform.config.Settings` fields."""
    return {
        "max_unzipped_bytes": int(max_unzipped_mb * 1e6),
        "max_zip_files": max_zip_files,
        "max_zip_ratio": max_zip_ratio,
        "eval_memory_mb": eval_memory_mb,
        "eval_timeout_s": eval_timeout,
    }


# Options shared with ``covseg serve`` (which passes them on to the worker it starts).
MAX_UNZIPPED_MB = typer.Option(
    8000.0, "--max-unzipped-mb", help="Most MB a submission zip may declare unpacked."
)
MAX_ZIP_FILES = typer.Option(500, "--max-zip-files", min=1, help="Most files in a submission zip.")
MAX_ZIP_RATIO = typer.Option(
    1100.0,
    "--max-zip-ratio",
    help="Most unpacked/packed ratio of a zip member over 1 MB (deflate reaches 1032).",
)
EVAL_MEMORY_MB = typer.Option(
    None,
    "--eval-memory-mb",
    min=100,
    help="Memory (MB) the scoring of one submission may use; default 1 GiB + 64 B per voxel "
    "of the largest truth mask.",
)
EVAL_TIMEOUT = typer.Option(
    1800.0, "--eval-timeout", min=1.0, help="Seconds the scoring of one submission may take."
)


def _exit_with_parent(parent_pid: int) -> None:
    """Stop this worker (as SIGTERM would) once the process that started it is gone."""
    import os
    import signal
    import time

    while os.getppid() == parent_pid:
        time.sleep(1.0)
    os.kill(os.getpid(), signal.SIGTERM)


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
    max_unzipped_mb: float = MAX_UNZIPPED_MB,
    max_zip_files: int = MAX_ZIP_FILES,
    max_zip_ratio: float = MAX_ZIP_RATIO,
    eval_memory_mb: int | None = EVAL_MEMORY_MB,
    eval_timeout: float = EVAL_TIMEOUT,
    parent_pid: int | None = typer.Option(
        None, "--parent-pid", hidden=True, help="Stop when this process (covseg serve) is gone."
    ),
) -> None:
    """Run evaluation workers for ``covseg serve`` (several may run, on several machines).

    SIGTERM or SIGINT (Ctrl-C) stops the worker: running evaluations give their submissions back
    to the queue, which the next worker takes up.

    Example: ``covseg worker --data-dir covseg-data --threads 2``
    """
    import logging
    import signal
    import threading

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
        **limit_settings(
            max_unzipped_mb, max_zip_files, max_zip_ratio, eval_memory_mb, eval_timeout
        ),
    )
    upgrade(make_engine(settings.url))
    queue = make_queue(settings)
    recovered = queue.recover()
    if recovered:
        typer.echo(f"re-queued {len(recovered)} submission(s): {recovered}")
    if burst:
        typer.echo(f"ran {queue.drain()} task(s)")
        return
    consumer = queue.huey.create_consumer(
        workers=threads, worker_type="thread", periodic=True, shutdown_timeout=SHUTDOWN_TIMEOUT_S
    )
    graceful = signal.getsignal(signal.SIGINT)  # the consumer's handler
    assert callable(graceful)

    def stop(signum: int, frame: Any) -> None:
        # Both signals stop gracefully: evaluations hand back at once, then the threads join.
        queue.stopping.set()
        graceful(signal.SIGINT, frame)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    if parent_pid is not None:
        threading.Thread(target=_exit_with_parent, args=(parent_pid,), daemon=True).start()
    consumer.run()
