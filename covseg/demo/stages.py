"""The demo's stages, one function each, reading what the earlier stages wrote in the folder."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from covseg.demo.config import MODEL_NAME, demo_plan
from covseg.demo.run import Run


@contextmanager
def _bar(run: Run, description: str, total: float, **fields: Any) -> Iterator[Any]:
    """A progress bar on the run's console; yields ``advance(step=1, **fields)`` to move it."""
    columns = [TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed:.0f}")]
    columns += [TextColumn(f"{k} {{task.fields[{k}]}}") for k in fields]
    with Progress(*columns, TimeElapsedColumn(), console=run.console) as progress:
        task: TaskID = progress.add_task(description, total=total, **fields)
        yield lambda step=1.0, **values: progress.update(task, advance=step, **values)


def phantoms(run: Run) -> None:
    """Synthetic chest CTs in the COVID-19-20 layout: training, validation and seen test cases
    from source A, unseen test cases from source B."""
    from covseg.phantom import write_dataset

    c = run.config
    written = write_dataset(
        run.data,
        n_train=c.n_train,
        n_validation=c.n_validation,
        n_test_seen=c.n_test_seen,
        n_test_unseen=c.n_test_unseen,
        size=c.size,
        seed=c.seed,
        progress=True,
    )
    run.console.print(f"{len(written)} phantom CTs ({c.size} x {c.size} in-plane) in {run.data}")


def fingerprint(run: Run) -> None:
    """Dataset statistics per source (the paper's Figure 3) as a table, CSV, JSON and plot."""
    from covseg.datasets import find_cases
    from covseg.fingerprint import fingerprint as compute
    from covseg.fingerprint import summary_table, write_outputs

    cases = [c for split in ("Train", "Validation", "Test") for c in find_cases(run.data / split)]
    with _bar(run, "fingerprint", len(cases)) as advance:
        table, summary = compute(cases, ("A",), on_case=lambda *_: advance())
    write_outputs(table, summary, run.folder / "fingerprint")
    run.console.print(summary_table(summary))


def train(run: Run) -> None:
    """Train the scaled-down baseline on Train/, validating on Validation/, within the budget."""
    from covseg.datasets import find_cases
    from covseg.model.plan import write_plan
    from covseg.model.train import train_fold

    plan, overrides = demo_plan(run.config)
    run.console.print(
        "baseline preset (MONAI BasicUNet, the organizers' augmentation), scaled down for a CPU "
        "demo:\n  " + "\n  ".join(overrides),
        highlight=False,
    )
    model = run.folder / "model"
    write_plan(plan, model)
    train_cases = find_cases(run.data / "Train", require_labels=True)
    val_cases = find_cases(run.data / "Validation", require_labels=True)
    budget = 60.0 * run.config.train_minutes
    with _bar(run, "training (seconds)", budget, epoch="-", loss="-", dice="-") as advance:
        seen = [0.0]

        def on_epoch(log: Any) -> None:
            dice = "-" if log.val_dice != log.val_dice else f"{log.val_dice:.3f}"
            step = min(log.seconds, budget) - seen[0]
            seen[0] += step
            advance(step, epoch=str(log.epoch), loss=f"{log.loss:.3f}", dice=dice)

        logs = train_fold(train_cases, val_cases, model / "fold_0", plan, on_epoch=on_epoch)
    last = logs[-1]
    run.console.print(
        f"{last.epoch} epochs in {last.seconds:.0f} s; validation Dice {last.val_dice:.3f}"
    )


def predict(run: Run) -> None:
    """Segment every test case with the trained model (lung crop, the CT's own geometry)."""
    from covseg.io import read_volume, write_mask
    from covseg.model.inference import load_models
    from covseg.model.plan import read_plan
    from covseg.model.predict import segment

    model = run.folder / "model"
    plan = read_plan(model)
    nets = load_models(model, plan)
    out = run.folder / "predictions"
    cases = run.test_cases()
    with _bar(run, "predict", len(cases)) as advance:
        for case in cases:
            ct = read_volume(case.image)
            result = segment(ct, nets, plan, path=case.image)
            write_mask(result.mask.array, ct, out / f"{case.case_id}.nii.gz")
            advance()


def quantify(run: Run) -> None:
    """Lesion burden of each test case from its predicted mask: JSON, one CSV, overlay PNGs."""
    import pandas as pd

    from covseg.io import read_volume
    from covseg.lung import lung_mask
    from covseg.quantify import quantify as burden
    from covseg.quantify import write_overlay

    out = run.folder / "burden"
    out.mkdir(parents=True)
    rows = []
    cases = run.test_cases()
    with _bar(run, "quantify", len(cases)) as advance:
        for case in cases:
            ct = read_volume(case.image)
            mask = read_volume(run.folder / "predictions" / f"{case.case_id}.nii.gz").array
            lung = lung_mask(ct, case.image)
            record = burden(ct, mask, lung)
            (out / f"{case.case_id}.json").write_text(json.dumps(record, indent=2) + "\n")
            write_overlay(ct, mask, lung, out / f"{case.case_id}.png", title=case.case_id)
            rows.append({"case": case.case_id, "source": case.source, **record})
            advance()
    pd.DataFrame(rows).to_csv(out / "burden.csv", index=False)


def teams(run: Run) -> None:
    """Simulated teams' predictions: the truth perturbed as :mod:`covseg.demo.teams` documents."""
    import numpy as np

    from covseg.demo.teams import TEAMS
    from covseg.io import read_volume, write_mask

    cases = run.test_cases()
    with _bar(run, "simulated teams", len(cases) * len(TEAMS)) as advance:
        for number, case in enumerate(cases):
            truth = read_volume(case.label)
            lung_file = run.data / "lungs" / f"{case.case_id}_lung.nii.gz"
            lung = np.asarray(read_volume(lung_file).array) != 0
            mask = np.asarray(truth.array) > 0
            for name, perturb in TEAMS.items():
                pred = perturb(mask, truth.spacing, lung, run.config.seed + number)
                write_mask(
                    pred.astype(np.uint8),
                    truth,
                    run.folder / "teams" / name / f"{case.case_id}.nii.gz",
                )
                advance()


def algorithms(run: Run) -> dict[str, Path]:
    """Prediction folder of every algorithm: the trained model, then the simulated teams."""
    from covseg.demo.teams import TEAMS

    return {MODEL_NAME: run.folder / "predictions"} | {
        name: run.folder / "teams" / name for name in TEAMS
    }


def evaluate(run: Run) -> None:
    """Score every algorithm on the test cases (metrics.csv and the Table-2 summary each)."""
    from covseg.metrics.batch import evaluate_folder, write_evaluation

    folders = algorithms(run)
    with _bar(run, "evaluate", len(folders)) as advance:
        for name, predictions in folders.items():
            table = evaluate_folder(predictions, run.data / "Test", workers=1, progress=False)
            write_evaluation(table, run.folder / "evaluation" / name / "metrics.csv")
            advance()


def rank(run: Run) -> None:
    """challengeR's three ranking methods on the six tasks, consensus, bootstrap, report; the
    blob plot and Dice podiums for the demo's report."""
    import pandas as pd

    from covseg.demo.figures import blob_plot, podium, save
    from covseg.ranking import run_ranking, table_from_evaluations
    from covseg.ranking.report import write_outputs

    metrics = {
        name: pd.read_csv(run.folder / "evaluation" / name / "metrics.csv")
        for name in algorithms(run)
    }
    table, smaller = table_from_evaluations(metrics)
    result = run_ranking(
        table,
        methods=["all"],
        bootstrap=run.config.bootstrap,
        seed=run.config.seed,
        smaller_better=smaller,
        progress=True,
    )
    write_outputs(result, run.folder / "ranking")
    out = run.folder / "figures"
    save(blob_plot(result), out / "blob.png")
    for task in ("dice_seen", "dice_unseen"):
        if any(t.name == task for t in result.tasks):
            save(podium(result, task), out / f"podium_{task}.png")


def report(run: Run) -> None:
    """The demo's own ``report.html``: settings, ranking and its figures, teams, burden."""
    import numpy as np
    import pandas as pd

    from covseg.demo.figures import example_case, save, subset_boxplots
    from covseg.demo.report import example_case_id, leaderboard, write_report
    from covseg.io import read_volume

    with _bar(run, "report", 3) as advance:
        order = list(leaderboard(run.folder)["algorithm"])
        metrics = {
            name: pd.read_csv(run.folder / "evaluation" / name / "metrics.csv") for name in order
        }
        out = run.folder / "figures"
        save(subset_boxplots(metrics, order), out / "boxplots.png")
        advance()
        case = example_case_id(run.folder)
        ct = read_volume(run.data / "Test" / f"{case}_ct.nii.gz")
        truth = np.asarray(read_volume(run.data / "Test" / f"{case}_seg.nii.gz").array)
        folders = algorithms(run)
        masks = {
            name: np.asarray(read_volume(folders[name] / f"{case}.nii.gz").array) for name in order
        }
        title = f"{case}: every algorithm's outline (dashed: reference)"
        save(example_case(ct, truth, masks, title), out / "example_case.png")
        advance()
        write_report(run)
        advance()
