"""Scoring a submission's cases in a child process, under a memory and a wall-time limit.

A participant's file is read only here: before each submission the child lowers its own
address-space limit (``RLIMIT_AS``) to that submission's, so a mask that needs too much memory
fails that case with a ``MemoryError`` (or, at worst, ends the child), never the worker or the
machine. The parent sends each job as one JSON line on the child's stdin and reads one JSON
line per scored case from its stdout, so it can report a heartbeat while it waits; when the
wall-time limit passes or the worker is stopping it kills the child's whole process group.

One child serves the consecutive submissions of one worker thread (starting Python with numpy,
scipy and nibabel costs ~0.6 CPU-s, more than scoring a small submission); after a kill or a
crash the next submission starts a fresh one. A child whose parent dies reads the end of its
stdin and exits.

Run as ``python -m covseg.platform.sandbox`` (by :class:`Sandbox` only).
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
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any

#: The parent's items: (case id, prediction path, truth path, source).
Item = tuple[str, str, str, str]
#: Seconds a new child may take to import what scoring needs.
START_TIMEOUT_S = 120.0


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


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """Kill a scoring child and whatever it started (its own session), then reap it."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()
    for stream in (proc.stdin, proc.stdout):
        if stream is not None:
            stream.close()


class Sandbox:
    """A scoring child process, started on first use and replaced after a kill or a crash."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen[bytes] | None = None
        self._lines: queue.Queue[bytes | None] = queue.Queue()
        self._stderr: IO[bytes] | None = None
        self._reaper: weakref.finalize[Any, Any] | None = None

    @property
    def pid(self) -> int | None:
        """The child's process id, or None before the first job and after a kill."""
        return None if self._proc is None else self._proc.pid

    def _start(self) -> None:
        self._stderr = tempfile.TemporaryFile()
        proc = subprocess.Popen(
            [sys.executable, "-m", "covseg.platform.sandbox"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=_child_env(),
            start_new_session=True,  # its own process group, killed as a whole
        )
        lines: queue.Queue[bytes | None] = queue.Queue()
        stdout = proc.stdout
        assert stdout is not None

        def read() -> None:
            for line in stdout:
                lines.put(line)
            lines.put(None)

        threading.Thread(target=read, daemon=True).start()
        self._proc, self._lines = proc, lines
        # A worker thread that ends drops its sandbox without closing it: kill the child then.
        self._reaper = weakref.finalize(self, _kill_group, proc)
        first = self._get(START_TIMEOUT_S)
        if first is None or "ready" not in json.loads(first):
            tail = self._stderr_tail()
            self.close()
            raise RuntimeError(f"the scoring process did not start: {tail}")

    def _get(self, timeout: float) -> bytes | None:
        try:
            return self._lines.get(timeout=timeout)
        except queue.Empty:
            self.close()
            raise RuntimeError("the scoring process did not answer") from None

    def _stderr_tail(self) -> str:
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        lines = self._stderr.read().decode(errors="replace").strip().splitlines()
        return lines[-1] if lines else ""

    def close(self) -> None:
        """Kill the child and whatever it started (its own session), then reap it."""
        proc, self._proc = self._proc, None
        if self._reaper is not None:
            self._reaper.detach()
            self._reaper = None
        if proc is not None:
            _kill_group(proc)
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def score(
        self,
        items: list[Item],
        limits: Limits,
        *,
        workers: int = 1,
        scheduler: str | None = None,
        on_row: Callable[[dict[str, Any]], None],
        tick: Callable[[], None],
        tick_every_s: float = 1.0,
    ) -> None:
        """Score ``items``, calling ``on_row`` with each row as it arrives.

        Parameters
        ----------
        items
            The cases to score.
        limits
            Memory and wall-time limits of this submission.
        workers, scheduler
            Passed to :func:`covseg.parallel.map_unordered` in the child.
        on_row
            Receives each ``score_case_files`` row (it may raise to abandon the scoring).
        tick
            Called at least every ``tick_every_s`` seconds while waiting (heartbeat; it may
            raise to abandon the scoring).

        Raises
        ------
        ScoringFailed
            The time limit passed, or the child died while scoring (out of memory).
        RuntimeError
            The child could not start (a fault of the server, not of the submission).
        """
        if self._proc is None or self._proc.poll() is not None:
            self.close()
            self._start()
        assert self._proc is not None and self._proc.stdin is not None
        job = {"items": items, "workers": workers, "scheduler": scheduler}
        job["memory_bytes"] = limits.memory_bytes
        try:
            self._proc.stdin.write(json.dumps(job).encode() + b"\n")
            self._proc.stdin.flush()
            self._follow(limits, on_row, tick, tick_every_s, len(items))
        except BaseException:
            self.close()  # a child in an unknown state is never reused
            raise

    def _follow(
        self,
        limits: Limits,
        on_row: Callable[[dict[str, Any]], None],
        tick: Callable[[], None],
        tick_every_s: float,
        expected: int,
    ) -> None:
        deadline = time.monotonic() + limits.wall_s
        rows = 0
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ScoringFailed(
                    f"the evaluation took longer than the limit of {limits.wall_s:.0f} s "
                    f"({rows} of {expected} cases scored)"
                )
            try:
                line = self._lines.get(timeout=min(tick_every_s, left))
            except queue.Empty:
                tick()
                continue
            if line is None:
                break
            message = json.loads(line)
            if message.get("done"):
                return
            rows += 1
            on_row(message)
            tick()
        assert self._proc is not None
        code = self._proc.wait()
        memory = "" if limits.memory_bytes is None else f"{limits.memory_bytes / 1e6:.0f} MB, "
        raise ScoringFailed(
            f"the scoring process stopped after {rows} of {expected} cases (exit status {code}); "
            f"a mask may need more memory or time than the evaluation's limits "
            f"({memory}{limits.wall_s:.0f} s)"
        )


_local = threading.local()


def thread_sandbox() -> Sandbox:
    """The scoring child of the calling thread (one per worker thread)."""
    sandbox = getattr(_local, "sandbox", None)
    if sandbox is None:
        sandbox = _local.sandbox = Sandbox()
    return sandbox


def _limit_memory(limit: int | None) -> None:
    """Set this process's address-space limit (soft; the hard limit stays as it was)."""
    import resource

    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if limit is not None and hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (hard if limit is None else limit, hard))


def _score(job: tuple[Item, int | None]) -> dict[str, Any]:
    """Score one case under ``limit`` (module-level, so that a process pool can pickle it).

    The limit is set here as well as in the child: pool processes are forked from a server
    started under an earlier job's limit.
    """
    from covseg.metrics.batch import score_case_files

    (case_id, pred, truth, source), limit = job
    _limit_memory(limit)
    return dict(score_case_files(case_id, pred, truth, source))


def main() -> None:
    """The child: for each job line, limit the address space, score, print a line per case."""
    import gc

    import covseg.metrics.batch  # noqa: F401  (imported once, for every job)
    from covseg.parallel import map_unordered

    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        job = json.loads(line)
        limit = job["memory_bytes"]
        _limit_memory(limit)
        cases = [(tuple(item), limit) for item in job["items"]]
        for row in map_unordered(_score, cases, workers=job["workers"], scheduler=job["scheduler"]):
            if limit is not None and "MemoryError" in str(row.get("error", "")):
                row["error"] = (
                    f"{row['case']}: reading or scoring it needs more memory than the "
                    f"evaluation's limit of {limit / 1e6:.0f} MB"
                )
            print(json.dumps(row), flush=True)
        gc.collect()
        print(json.dumps({"done": True}), flush=True)


if __name__ == "__main__":
    main()
