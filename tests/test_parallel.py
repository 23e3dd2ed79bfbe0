"""covseg.parallel: the same results in-process, in processes and on Dask, as they finish."""

import os
import time

import pytest

from covseg.parallel import default_workers, map_unordered


def _slow_first(x: int) -> tuple[int, int]:
    """Item 0 takes longest; returns (item, worker process id)."""
    time.sleep(0.5 if x == 0 else 0.01)
    return x, os.getpid()


def _square(x: int) -> int:
    return x * x


def _fails_on_three(x: int) -> int:
    if x == 3:
        raise RuntimeError("three")
    return x


def test_one_worker_runs_in_this_process_without_pickling():
    seen = []
    results = list(map_unordered(lambda x: seen.append(x) or x + 1, [1, 2, 3], workers=1))
    assert results == [2, 3, 4] and seen == [1, 2, 3]


def test_processes_yield_results_as_they_finish():
    results = list(map_unordered(_slow_first, [0, 1, 2, 3], workers=2))
    assert sorted(x for x, _ in results) == [0, 1, 2, 3]
    assert results[-1][0] == 0  # the slow item ends last although it was submitted first
    assert os.getpid() not in {pid for _, pid in results}


def test_errors_propagate_from_workers():
    with pytest.raises(RuntimeError, match="three"):
        list(map_unordered(_fails_on_three, range(5), workers=2))
    with pytest.raises(ValueError, match="at least 1"):
        list(map_unordered(_square, [1], workers=0))


def test_progress_bar_goes_to_stderr(capsys):
    assert sorted(map_unordered(_square, [1, 2, 3], workers=1, progress=True)) == [1, 4, 9]
    captured = capsys.readouterr()
    assert "3/3" in captured.err and captured.out == ""


def test_dask_scheduler_gives_the_same_results():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=1, processes=False, dashboard_address=None) as cluster:
        results = map_unordered(_square, list(range(6)), scheduler=cluster.scheduler_address)
        assert sorted(results) == [0, 1, 4, 9, 16, 25]
        with pytest.raises(RuntimeError, match="three"):
            list(map_unordered(_fails_on_three, [1, 3], scheduler=cluster.scheduler_address))


def test_default_workers_is_positive():
    assert 1 <= default_workers() <= (os.cpu_count() or 1)
