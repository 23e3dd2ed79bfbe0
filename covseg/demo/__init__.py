"""``covseg demo``: a whole COVID-19-20-style challenge on synthetic phantoms, in minutes.

Stages, each resumable (see :mod:`covseg.demo.state`): phantom dataset in the COVID-19-20 layout,
fingerprint, training of the ``baseline`` preset within a time budget, prediction of the test
cases, lesion burden, simulated teams, evaluation, statistical ranking, and an HTML report.

Modules: :mod:`~covseg.demo.config` (settings, the scaled-down plan), :mod:`~covseg.demo.run`
(one run's folder), :mod:`~covseg.demo.stages` (one function a stage),
:mod:`~covseg.demo.teams` (the simulated teams), :mod:`~covseg.demo.figures` and
:mod:`~covseg.demo.report` (``report.html``).
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from covseg.demo import stages
from covseg.demo.config import MODEL_NAME, make_config, needed_bytes
from covseg.demo.run import Run
from covseg.demo.state import (
    DemoConfig,
    DemoFolderError,
    check_config,
    check_disk,
    clear,
    read_state,
    write_state,
)

__all__ = ["MODEL_NAME", "STAGES", "DemoConfig", "DemoFolderError", "make_config", "run_demo"]

#: Every stage, in order, with the outputs (relative to the folder) it writes; the function of
#: stage ``name`` is ``covseg.demo.stages.<name>``.
OUTPUTS: dict[str, tuple[str, ...]] = {
    "phantoms": ("data",),
    "fingerprint": ("fingerprint",),
    "train": ("model",),
    "predict": ("predictions",),
    "quantify": ("burden",),
    "teams": ("teams",),
    "evaluate": ("evaluation",),
    "rank": ("ranking", "figures"),
    "report": ("report.html", "figures/boxplots.png", "figures/example_case.png"),
}
#: Stage names, in order.
STAGES = tuple(OUTPUTS)


def run_demo(folder: Path, config: DemoConfig, console: Console | None = None) -> list[str]:
    """Run (or resume) the demo in ``folder``; returns the stages run this time.

    Stages after the first unfinished one are all redone (each stage reads its predecessors'
    outputs), so a folder never mixes outputs of two runs.

    Raises
    ------
    DemoFolderError
        A folder holding other files, made with other settings, or too little free disk.
    """
    console = console or Console()
    done = check_config(folder, read_state(folder), config)
    start = next((n for n, name in enumerate(STAGES) if name not in done), len(STAGES))
    if start < len(STAGES):
        check_disk(folder, needed_bytes(config))
    finished = list(STAGES[:start])
    for name in STAGES[start:]:
        clear([folder / p for p in OUTPUTS[name]])  # an interrupted stage starts from scratch
        write_state(folder, config, finished)
        console.rule(f"[bold]{name}")
        getattr(stages, name)(Run(folder, config, console))
        finished.append(name)
        write_state(folder, config, finished)
    return list(STAGES[start:])
