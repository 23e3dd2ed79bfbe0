"""One way to run a function over many items: local processes by default, a Dask cluster for scale.

Results come back as they finish, not in input order, so a progress bar advances with the work;
put an identifier in each result (such as the case id) to tell them apart.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def default_workers() -> int:
    """All cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def map_unordered(
    fn: Callable[[T], R],
    items: Sequence[T],
    *,
    workers: int | None = None,
    scheduler: str | None = None,
    progress: bool = False,
    description: str = "working",
) -> Iterator[R]:
    """Apply ``fn`` to every item and yield the results in the order they finish.

    Parameters
    ----------
    fn
        A module-level function (it is pickled to the workers). An exception it raises is raised
        here, so functions that must not stop the batch catch their own errors.
    items
        The inputs, one call each (pickled to the workers too).
    workers
        Local worker processes; default all cores; 1 runs in this process (no pickling), which is
        what tests and debuggers want. Ignored with ``scheduler``.
    scheduler
        Address of a Dask distributed scheduler (``tcp://host:8786``); the cluster's workers run
        the calls instead of local processes. They need covseg installed, and the files the
        items name must be visible to them at the same paths (a shared file system).
    progress
        Show a ``rich`` progress bar on stderr that advances as results arrive.
    description
        The progress bar's label.

    Examples
    --------
    >>> sorted(map_unordered(abs, [-2, 1, -3], workers=1))
    [1, 2, 3]
    """
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    with ExitStack() as stack:
        advance = _progress(stack, len(items), description) if progress else None
        if scheduler is not None:
            results = _dask(fn, items, scheduler, stack)
        elif min(workers or default_workers(), len(items)) <= 1:
            results = (fn(item) for item in items)
        else:
            results = _processes(fn, items, min(workers or default_workers(), len(items)), stack)
        for result in results:
            if advance is not None:
                advance()
            yield result


def _progress(stack: ExitStack, total: int, description: str) -> Callable[[], None]:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    bar = stack.enter_context(
        Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
        )
    )
    task = bar.add_task(description, total=total)
    return lambda: bar.advance(task)


def _processes(
    fn: Callable[[T], R], items: Sequence[T], workers: int, stack: ExitStack
) -> Iterator[R]:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    # forkserver, not fork: forking a process that runs threads (a web server, a Dask client, a
    # progress bar) can deadlock the child; workers import what ``fn`` needs once, then stay.
    context = multiprocessing.get_context("forkserver")
    pool = stack.enter_context(ProcessPoolExecutor(max_workers=workers, mp_context=context))
    # Leaving early (an error, or the caller stops iterating) must not wait for queued work.
    stack.callback(pool.shutdown, wait=True, cancel_futures=True)
    futures = [pool.submit(fn, item) for item in items]
    return (future.result() for future in as_completed(futures))


def _dask(
    fn: Callable[[T], R], items: Sequence[T], scheduler: str, stack: ExitStack
) -> Iterator[R]:
    from distributed import Client, as_completed

    client = stack.enter_context(Client(scheduler, set_as_default=False))
    # pure=False: identical items are still separate calls (their results may differ by seed).
    futures = client.map(fn, list(items), pure=False)
    stack.callback(client.cancel, futures)
    return (future.result() for future in as_completed(futures, loop=client.loop))
