"""Scoring a submission's cases in a child process, under a memory and a wall-time limit.

A participant's file is read only here: the child limits its own address space
(``RLIMIT_AS``) before it reads anything, so a mask that needs too much memory fails that
case with a ``MemoryError`` (or, at worst, ends the child), never the worker or the machine.
The parent sends the job as JSON on the child's stdin and reads one JSON line per scored case
from its stdout, so it can report a heartbeat while it waits, and kills the child's whole
process group when the wall-time limit passes or the worker is stopping.

Run as ``python -m covseg.platform.sandbox`` (by :func:`score_in_child` only).
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

#: The parent's items: (case id, prediction path, truth path, source).
Item = tuple[str, str, str, str]


class ScoringFailed(Exception):
    """The submission cannot be scored within the limits (the message is for the participant)."""


@dataclass(frozen=True)
class Limits:
    """What one submission's scoring may use.

    Attributes
    ----------
    memory_bytes
        Address-space limit of the scoring process (and of each process it starts);
        ``None``: no limit.
    wall_s
        Seconds the whole scoring may take.
    """

    memory_bytes: int | None
    wall_s: float


def _child_env() -> dict[str, str]:
    """The environment of the child: one BLAS thread and few malloc arenas.

    Both reserve address space per thread (tens of MB each on a many-core machine), which
    would count against the memory limit without helping the per-case scoring.
    """
    env = dict(os.environ)
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[name] = "1"
    env["MALLOC_ARENA_MAX"] = "2"
    return env


def _kill(proc: subprocess.Popen[bytes]) -> None:
    """Kill the child and whatever it started (its own session), then reap it."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()


def score_in_child(
    items: list[Item],
    limits: Limits,
    *,
    workers: int = 1,
    scheduler: str | None = None,
    on_row: Callable[[dict[str, Any]], None],
    tick: Callable[[], None],
    tick_every_s: float = 5.0,
) -> None:
    """Score ``items`` in a child process, calling ``on_row`` with each row as it arrives.

    Parameters
    ----------
    items
        The cases to score.
    limits
        Memory and wall-time limits.
    workers, scheduler
        Passed to :func:`covseg.parallel.map_unordered` in the child.
    on_row
        Receives each ``score_case_files`` row (it may raise to abandon the scoring).
    tick
        Called at least every ``tick_every_s`` seconds while waiting (heartbeat; it may raise).

    Raises
    ------
    ScoringFailed
        The time limit passed, or the child died after it started scoring (out of memory).
    RuntimeError
        The child could not start (a fault of the server, not of the submission).
    """
    command = [sys.executable, "-m", "covseg.platform.sandbox"]
    job = {"items": items, "workers": workers, "scheduler": scheduler}
    job["memory_bytes"] = limits.memory_bytes
    with tempfile.TemporaryFile() as stderr:
        proc = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            env=_child_env(),
            start_new_session=True,  # its own process group, killed as a whole
        )
        try:
            _run(proc, job, limits, on_row, tick, tick_every_s, len(items), stderr)
        finally:
            _kill(proc)


def _run(
    proc: subprocess.Popen[bytes],
    job: dict[str, Any],
    limits: Limits,
    on_row: Callable[[dict[str, Any]], None],
    tick: Callable[[], None],
    tick_every_s: float,
    expected: int,
    stderr: Any,
) -> None:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(json.dumps(job).encode())
    proc.stdin.close()
    lines: queue.Queue[bytes | None] = queue.Queue()
    stdout = proc.stdout

    def read() -> None:
        for line in stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    deadline = time.monotonic() + limits.wall_s
    ready, rows = False, 0
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise ScoringFailed(
                f"the evaluation took longer than the limit of {limits.wall_s:.0f} s "
                f"({rows} of {expected} cases scored)"
            )
        try:
            line = lines.get(timeout=min(tick_every_s, left))
        except queue.Empty:
            tick()
            continue
        if line is None:
            break
        message = json.loads(line)
        if "ready" in message:
            ready = True
            continue
        rows += 1
        on_row(message)
        tick()
    code = proc.wait()
    if code == 0 and rows == expected:
        return
    stderr.seek(0)
    tail = stderr.read().decode(errors="replace").strip().splitlines()[-1:]
    if not ready:
        raise RuntimeError(f"the scoring process did not start (exit {code}): {tail}")
    memory = "" if limits.memory_bytes is None else f"{limits.memory_bytes / 1e6:.0f} MB, "
    raise ScoringFailed(
        f"the scoring process stopped after {rows} of {expected} cases (exit status {code}); "
        f"a mask may need more than the evaluation's limits ({memory}{limits.wall_s:.0f} s)"
    )


def _score(item: Item) -> dict[str, Any]:
    """Score one case (module-level, so that a process pool can pickle it)."""
    from covseg.metrics.batch import score_case_files

    case_id, pred, truth, source = item
    return dict(score_case_files(case_id, pred, truth, source))


def main() -> None:
    """The child: limit the address space, then score and print one JSON line per case."""
    import resource

    job = json.load(sys.stdin)
    limit = job["memory_bytes"]
    if limit is not None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    from covseg.parallel import map_unordered

    print(json.dumps({"ready": True}), flush=True)
    items = [tuple(item) for item in job["items"]]
    for row in map_unordered(_score, items, workers=job["workers"], scheduler=job["scheduler"]):
        if limit is not None and "MemoryError" in str(row.get("error", "")):
            row["error"] = (
                f"{row['case']}: reading or scoring it needs more memory than the evaluation's "
                f"limit of {limit / 1e6:.0f} MB"
            )
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
