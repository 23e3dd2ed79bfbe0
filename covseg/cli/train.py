"""``covseg train``: train a segmentation model from a preset (baseline, auto, slices-2d)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from covseg.cli._app import app, fail

if TYPE_CHECKING:
    from covseg.datasets import Case


@app.command()
def train(
    data_dir: Path = typer.Argument(
        ..., help="Labelled training data (any covseg.datasets layout)."
    ),
    output: Path = typer.Option(..., "-o", "--output", help="Model folder to write."),
    preset: str = typer.Option(
        "baseline", help="baseline, auto or auto-2d (planned from the data), slices-2d."
    ),
    fold: str | None = typer.Option(
        None, help="Fold to train (0..folds-1) or 'all' (default: all for slices-2d, else 0)."
    ),
    epochs: int | None = typer.Option(None, help="Override training.epochs."),
    max_minutes: float | None = typer.Option(
        None,
        help="Wall-clock budget: 3D presets stop after the epoch that passes it; slices-2d "
        "fits its networks per fold and iterations to it.",
    ),
    set_: list[str] = typer.Option([], "--set", help="Override a plan value: SECTION.KEY=VALUE."),
    extra: list[Path] = typer.Option(
        [], help="Extra training-only cases, e.g. a `covseg pseudo-label` folder (repeatable)."
    ),
    unlabelled: Path | None = typer.Option(
        None,
        help="slices-2d: a folder of unlabelled slices (PNG/JPG/DICOM); runs teacher -> "
        "pseudo-labels -> student in each fold within --max-minutes (default 30).",
    ),
    resume: bool = typer.Option(
        False,
        help="Continue from each fold's last.pt: the epochs, the learning-rate schedule and the "
        "time budget go on where they stopped (--max-minutes counts the whole training). "
        "slices-2d: keep the networks already written, train the missing ones.",
    ),
    threads: int | None = typer.Option(
        None,
        help="torch CPU threads (default: torch's); slices-2d: the cores its folds share "
        "(default: all).",
    ),
    progress: bool = typer.Option(True, help="Show progress bars."),
) -> None:
    """Train a model; the plan is written to MODEL_DIR/plan.yaml, each fold to MODEL_DIR/fold_K/
    (best.pt, last.pt, log.csv). Runs on several GPUs (or CPU processes) under torchrun.

    Example: covseg train phantoms/Train -o models/baseline --preset baseline --fold all
    """
    from covseg.datasets import CaseError, DatasetError, find_cases
    from covseg.model import distributed as dist
    from covseg.model.plan import (
        PlanError,
        apply_overrides,
        check_plan,
        load_preset,
        pipeline_of,
        read_plan,
        write_plan,
    )

    overrides = list(set_)
    if epochs is not None:
        overrides.append(f"training.epochs={epochs}")
    if max_minutes is not None:
        overrides.append(f"training.max_minutes={max_minutes}")
    elif unlabelled is not None:
        from covseg.model.slices2d.semi import DEFAULT_MINUTES

        overrides.append(f"training.max_minutes={DEFAULT_MINUTES}")
    try:
        if resume and (output / "plan.yaml").is_file():
            plan = apply_overrides(read_plan(output), overrides)
        elif preset in ("auto", "auto-2d"):
            from covseg.model.planner import plan_from_data

            variant = "2d" if preset == "auto-2d" else "3d"
            plan = apply_overrides(plan_from_data(data_dir, variant), overrides)
        else:
            plan = apply_overrides(load_preset(preset), overrides)
        check_plan(plan)
        slices = pipeline_of(plan) == "slices-2d"
        n_folds = int(plan["training"]["folds"])
        if fold is None:  # the 2D recipe is a fold ensemble: its CV report needs every fold
            fold = "all" if slices else "0"
        folds = list(range(n_folds)) if fold == "all" else [int(fold)]
        if any(not 0 <= k < n_folds for k in folds):
            raise PlanError(f"--fold {fold}: choose 0..{n_folds - 1} or 'all'")
    except (PlanError, ValueError) as exc:
        raise fail(str(exc)) from None
    if slices:
        _train_slices(
            data_dir,
            output,
            plan,
            None if fold == "all" else folds,
            extra,
            unlabelled,
            resume,
            threads,
            progress,
        )
        return
    if unlabelled is not None:
        raise fail("--unlabelled: only with --preset slices-2d (3D: covseg pseudo-label + --extra)")
    try:
        cases = find_cases(data_dir, require_labels=True)
        extra_cases = [c for folder in extra for c in find_cases(folder, require_labels=True)]
    except DatasetError as exc:
        raise fail(str(exc)) from None
    if threads:
        import torch

        torch.set_num_threads(threads)
    dist.setup()
    several = dist.active()
    try:
        if dist.is_main():
            write_plan(plan, output)
        for k in folds:
            _train_one(cases, extra_cases, output, plan, k, resume, progress and dist.is_main())
    except (CaseError, PlanError, ValueError) as exc:
        raise fail(str(exc)) from None
    finally:
        dist.teardown()
    if several:
        dist.end_worker()


def _train_slices(
    data_dir: Path,
    output: Path,
    plan: dict[str, Any],
    folds: list[int] | None,
    extra: list[Path],
    unlabelled: Path | None,
    resume: bool,
    threads: int | None,
    progress: bool,
) -> None:
    """The slices-2d recipe: supervised, with ``--extra`` slice folders, or semi-supervised."""
    from covseg.model.slices2d import train_slices_2d
    from covseg.model.slices2d.semi import train_semi, train_with_extra

    def say(line: str) -> None:
        typer.echo(line)

    try:  # bad slices, masks or plan values: one line naming the file or the value
        if (unlabelled is not None or extra) and resume:
            raise ValueError("--resume: not with --unlabelled or --extra")
        if unlabelled is not None:
            if extra:
                raise ValueError("--unlabelled and --extra: choose one")
            train_semi(
                data_dir, output, plan, unlabelled, folds, progress, on_message=say, cores=threads
            )
        elif extra:
            train_with_extra(
                data_dir, output, plan, extra, folds, progress, on_message=say, cores=threads
            )
        else:
            train_slices_2d(
                data_dir,
                output,
                plan,
                folds,
                progress=progress,
                on_message=say,
                resume=resume,
                cores=threads,
            )
    except ValueError as exc:
        raise fail(str(exc)) from None


def _train_one(
    cases: list[Case],
    extra_cases: list[Case],
    output: Path,
    plan: dict[str, Any],
    fold: int,
    resume: bool,
    progress: bool,
) -> None:
    """Train fold ``fold`` with a progress bar showing loss and validation Dice."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from covseg.model.train import EpochLog, split_fold, train_fold

    train_cases, val_cases = split_fold(cases, plan, fold)
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TextColumn("loss {task.fields[loss]}  val Dice {task.fields[dice]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, disable=not progress, transient=False) as bar:
        n = len(train_cases) + len(extra_cases) + len(val_cases)
        loading = bar.add_task(f"fold {fold}: caching", total=n, loss="-", dice="-")
        task = bar.add_task(
            f"fold {fold}: epochs", total=int(plan["training"]["epochs"]), loss="-", dice="-"
        )

        def on_epoch(log: EpochLog) -> None:
            dice = "-" if log.val_dice != log.val_dice else f"{log.val_dice:.3f}"
            bar.update(task, completed=log.epoch, loss=f"{log.loss:.4f}", dice=dice)

        train_fold(
            [*train_cases, *extra_cases],
            val_cases,
            output / f"fold_{fold}",
            plan,
            resume=resume,
            on_epoch=on_epoch,
            on_load=lambda _: bar.advance(loading),
            on_skip=lambda message: typer.secho(f"error: {message}", fg=typer.colors.RED, err=True),
        )
