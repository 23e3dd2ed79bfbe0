"""slices-2d holds its time budget, shows progress at once, writes as it goes and resumes."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from covseg.model.plan import load_preset
from covseg.model.slices2d import budget, train_slices_2d
from covseg.model.slices2d.fit import Schedule, train_network


def _folder(root: Path, n: int) -> Path:
    """``n`` grey slices with a bright square lesion (what they show does not matter here)."""
    (root / "images").mkdir(parents=True)
    (root / "lesion").mkdir()
    for i in range(n):
        image = np.full((40, 40), 60, np.uint8)
        mask = np.zeros((40, 40), bool)
        mask[10 + i : 20 + i, 12:24] = True
        image[mask] = 200
        Image.fromarray(image).save(root / "images" / f"{i}.png")
        Image.fromarray(mask.astype(np.uint8) * 255).save(root / "lesion" / f"{i}.png")
    return root


def _plan(**training: Any) -> dict[str, Any]:
    plan = load_preset("slices-2d")
    plan["image_size"] = 32
    plan["network"]["features"] = [4, 4, 8, 8, 8, 4]
    plan["inference"]["scales"] = [1.0]
    plan["training"].update(
        folds=2, iterations=20, members=2, fold_processes=1, max_minutes=None, classes=False
    )
    plan["training"].update(training)
    return plan


def test_the_schedule_shrinks_to_the_deadline_and_still_ends_near_zero() -> None:
    schedule = Schedule(400)
    assert schedule.warmup == 20
    assert schedule.factor(0) == pytest.approx(1 / 20)
    # 100 steps done at 0.5 s each, 20 s left: 40 more fit, so 140 in all.
    schedule.fit(100, 0.5, 20.0)
    assert schedule.total == 140
    schedule.fit(100, 0.5, 100.0)  # more time later never lengthens the plan
    assert schedule.total == 140
    # The cosine now ends at the new last step: its factor there is that of a full run's.
    assert schedule.factor(139) == pytest.approx(0.5 * (1 + math.cos(math.pi * 139 / 140)))
    assert schedule.factor(139) < 1e-3
    schedule.fit(120, 0.5, -5.0)  # past the deadline: stop now
    assert schedule.total == 120


def test_a_network_stops_at_its_deadline_with_a_decayed_learning_rate() -> None:
    torch.set_num_threads(1)
    images = torch.rand(8, 1, 32, 32)
    masks = (torch.rand(8, 1, 32, 32) > 0.8).float()
    plan = _plan(iterations=1_000_000, bf16=False)
    lines: list[str] = []
    start = time.time()
    trained = train_network(images, masks, plan, 0, deadline=start + 5.0, on_progress=lines.append)
    elapsed = time.time() - start
    assert 1 <= trained.iterations < 1_000_000
    assert elapsed < 15.0, elapsed  # 5 s asked; a busy machine may add a few slow steps
    assert any(line.strip().startswith("iter 1/") for line in lines)
    assert any("cut to" in line and "of 1000000 iterations" in line for line in lines)
    assert lines[-1].strip().startswith(f"iter {trained.iterations}/{trained.iterations}")


def test_max_minutes_holds_where_steps_are_slower_than_the_start_up_estimate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The start-up timing says a step is nearly free, so the plan keeps 2 x 100,000 iterations
    # a fold; only the deadlines measured while training can end the run on time.
    torch.set_num_threads(1)
    monkeypatch.setattr(budget, "step_seconds", lambda plan, threads: 1e-6)
    data = _folder(tmp_path / "train", 6)
    plan = _plan(iterations=100_000, max_minutes=0.2)
    start = time.time()
    lines: list[str] = []
    report = train_slices_2d(data, tmp_path / "model", plan, on_message=lines.append)
    elapsed = time.time() - start
    assert elapsed < 2 * 12, elapsed  # a 12 s budget, ended within twice it on a busy machine
    assert report["networks_per_fold"] == 2 and report["iterations_per_network"] == 100_000
    trained = [n for counts in report["iterations_trained"].values() for n in counts]
    assert len(trained) == 4 and all(1 <= n < 100_000 for n in trained)
    assert sorted(p.name for p in (tmp_path / "model").glob("fold_*/model*.pt")) == [
        "model.pt",
        "model.pt",
        "model_1.pt",
        "model_1.pt",
    ]


def test_progress_comes_at_once_and_goes_to_the_callback(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    data = _folder(tmp_path / "train", 4)
    stamps: list[tuple[float, str]] = []
    start = time.time()
    train_slices_2d(
        data,
        tmp_path / "model",
        _plan(iterations=3, members=1),
        progress=True,
        on_message=lambda line: stamps.append((time.time() - start, line)),
    )
    first_time, first = stamps[0]
    assert first == "slices-2d: 4 slices, fold(s) 0, 1" and first_time < 5.0
    lines = [line for _, line in stamps]
    assert "    fold 0 iter 1/3  loss" in "\n".join(lines)
    assert any(line.startswith("fold 1: Dice ") for line in lines)
    assert lines[-1].startswith("CV Dice mean: ")


class _Interrupt(Exception):
    pass


def test_an_interrupted_run_resumes_with_the_networks_it_wrote(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    data, model = _folder(tmp_path / "train", 6), tmp_path / "model"
    plan = _plan(iterations=4)

    def stop_at_fold_1_member_1(line: str) -> None:
        if line.strip().startswith("fold 1 member 1 iter 1/"):
            raise _Interrupt

    with pytest.raises(_Interrupt):
        train_slices_2d(data, model, plan, progress=True, on_message=stop_at_fold_1_member_1)
    # Written as it went: the plan first, then every network as soon as it was trained.
    saved = yaml.safe_load((model / "plan.yaml").read_text())
    assert saved["pipeline"] == "slices-2d" and saved["training"]["members"] == 2
    assert sorted(str(p.relative_to(model)) for p in model.glob("fold_*/model*")) == [
        "fold_0/model.pt",
        "fold_0/model_1.pt",
        "fold_1/model.pt",
    ]
    lines: list[str] = []
    report = train_slices_2d(
        data, model, saved, progress=True, on_message=lines.append, resume=True
    )
    trained = [line.strip().split(" iter ")[0] for line in lines if " iter " in line]
    assert set(trained) == {"fold 1 member 1"}
    assert report["iterations_trained"] == {0: [None, None], 1: [None, 4]}
    written = json.loads((model / "cv_report.json").read_text())
    assert written["iterations_trained"] == {"0": [None, None], "1": [None, 4]}
    assert len(written["slices"]) == 6 and set(written["dice_per_fold"]) == {"0", "1"}
    assert yaml.safe_load((model / "plan.yaml").read_text())["folds_trained"] == [0, 1]


def test_a_fresh_run_removes_the_members_it_replaces(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    data, model = _folder(tmp_path / "train", 4), tmp_path / "model"
    train_slices_2d(data, model, _plan(iterations=2, members=2))
    train_slices_2d(data, model, _plan(iterations=2, members=1))
    assert sorted(p.name for p in model.glob("fold_*/model*")) == ["model.pt", "model.pt"]


def test_train_command_threads_and_resume_reach_slices_2d(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    import covseg.model.slices2d as slices2d
    from covseg.cli import app

    seen: dict[str, Any] = {}
    monkeypatch.setattr(slices2d, "train_slices_2d", lambda *a, **kw: seen.update(kw))
    data = _folder(tmp_path / "train", 4)
    args = ["train", str(data), "-o", str(tmp_path / "m"), "--preset", "slices-2d"]
    result = CliRunner().invoke(app, [*args, "--threads", "1", "--resume"])
    assert result.exit_code == 0, result.output
    assert seen["cores"] == 1 and seen["resume"] is True
    assert budget.fold_processes(5, "auto", cores=1) == (1, 1)
    assert budget.fold_processes(5, "auto", cores=4) == (4, 1)


def test_an_empty_folder_is_named_before_anything_else(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from covseg.cli import app

    (tmp_path / "empty").mkdir()
    args = ["train", str(tmp_path / "empty"), "-o", str(tmp_path / "m"), "--preset", "slices-2d"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1
    assert result.output.startswith("error: "), result.output
    assert "classes" not in result.output and str(tmp_path / "empty") in result.output


def test_waves_and_their_deadlines() -> None:
    # 5 folds on 2 processes: two full waves of 2 (one thread each), then 1 fold on 2 threads.
    plan = budget.waves([0, 1, 2, 3, 4], 2, 1)
    assert plan == [([0, 1], 2, 1), ([2, 3], 2, 1), ([4], 1, 2)]
    weights = budget.wave_weights(plan, 2)
    assert weights == [1.0, 1.0, budget.PARTIAL_WAVE]
    # 110 s left for waves of 1 + 1 + 0.75: the first gets 40 s of them.
    assert budget.wave_deadline(0.0, 110.0, weights) == pytest.approx(40.0)
    assert budget.member_deadline(10.0, 70.0, 2) == pytest.approx(40.0)
    assert budget.waves([3, 1], 1, 2) == [([3], 1, 2), ([1], 1, 2)]


def test_a_fold_out_of_time_predicts_the_plans_variant_only(tmp_path: Path) -> None:
    from covseg.model.slices2d.cv import FoldResult, _oof_variants
    from covseg.model.slices2d.report import cv_report, summary_lines, write_report

    net = torch.nn.Conv2d(1, 1, 1).eval()
    plan = _plan(bf16=False)
    images = [np.full((20, 30), 200, np.uint8), np.full((25, 20), 10, np.uint8)]
    assert set(_oof_variants([net], images, plan)) == {"final", "tta", "no_tta", "one_scale"}
    late = _oof_variants([net], images, plan, full=False)
    assert set(late) == {"final", "no_tta"}  # the preset predicts without TTA
    # One fold on time, one late: the late fold's missing variants leave their means empty.
    truths = [p >= 0.5 for p in late["final"]] * 2
    on_time = FoldResult(0, [0, 1], [], _oof_variants([net], images, plan), [3])
    report = cv_report(
        ["a", "b", "c", "d"], truths, [on_time, FoldResult(1, [2, 3], [], late)], plan
    )
    assert report["dice_mean"] == report["dice_mean_no_tta"] == 1.0
    assert report["dice_mean_tta"] is None and report["dice_mean_one_scale"] is None
    assert [row["dice_tta"] is None for row in report["slices"]] == [False, False, True, True]
    write_report(tmp_path, {**report, "train_seconds": 1.0}, {})
    assert (tmp_path / "cv_report.csv").read_text().splitlines()[3].endswith(",1.0,1.0,,1.0,")
    assert "mirror TTA -, no TTA 1.0000" in summary_lines({**report, "train_seconds": 1.0}, 32)[-1]


def test_a_slow_first_step_does_not_cut_the_network(monkeypatch: pytest.MonkeyPatch) -> None:
    # The first step of a process sets up kernels (3 s against 0.2 s on this machine); timed
    # with the others it cut a 450-iteration network to 46 in a 30-minute semi-supervised run.
    from covseg.model.slices2d import fit

    torch.set_num_threads(1)
    real = fit._train_step
    calls = []

    def slow_first(*args: Any, **kwargs: Any) -> float:
        calls.append(1)
        if len(calls) == 1:
            time.sleep(2.0)
        return real(*args, **kwargs)

    monkeypatch.setattr(fit, "_train_step", slow_first)
    images = torch.rand(8, 1, 32, 32)
    masks = (torch.rand(8, 1, 32, 32) > 0.8).float()
    plan = _plan(iterations=40, bf16=False)
    trained = train_network(images, masks, plan, 0, deadline=time.time() + 8.0)
    assert trained.iterations == 40  # 40 fast steps fit the 6 s left after the slow one


def test_fold_workers_end_when_their_train_command_is_killed(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys

    import psutil

    data = _folder(tmp_path / "train", 6)
    settings = ["image_size=32", "network.features=[4,4,8,8,8,4]", "training.iterations=100000"]
    settings += ["training.fold_processes=2", "training.max_minutes=null", "training.folds=2"]
    command = [sys.executable, "-c", "from covseg.cli import main; main()", "train", str(data)]
    command += ["-o", str(tmp_path / "m")]
    command += ["--preset", "slices-2d", "--no-progress", "--threads", "2"]
    command += [a for s in settings for a in ("--set", s)]
    main = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers: list[psutil.Process] = []
    try:
        process = psutil.Process(main.pid)

        def fold_workers() -> list[psutil.Process]:  # not multiprocessing's resource tracker
            return [p for p in process.children() if "spawn_main" in " ".join(p.cmdline())]

        deadline = time.time() + 120
        while len(fold_workers()) < 2 and time.time() < deadline:
            time.sleep(0.5)
        workers = fold_workers()
        assert len(workers) == 2, "the fold workers never started"

        def busy(p: psutil.Process) -> bool:  # imports done, training (~3 CPU-s to set up)
            try:
                return sum(p.cpu_times()[:2]) > 8.0
            except psutil.NoSuchProcess:
                return False

        while not all(busy(p) for p in workers) and time.time() < deadline:
            time.sleep(0.5)
        assert all(busy(p) for p in workers), "the fold workers never got to training"
        os.kill(main.pid, signal.SIGKILL)
        main.wait(10)
        gone, alive = psutil.wait_procs(workers, timeout=15)
        assert not alive, [p.pid for p in alive]
    finally:
        if main.poll() is None:
            main.kill()
        for worker in workers:  # never leave a failed run's workers behind
            if worker.is_running():
                worker.kill()
