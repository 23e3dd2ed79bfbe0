"""The demo folder's state file: which run made the folder and which stages it finished.

A demo folder holds ``demo.json`` with the run's configuration and the stages completed so far.
Running again with the same configuration skips the finished stages and redoes the first
unfinished one from scratch (its partial outputs are deleted first), so an interrupted run resumes
without mixing two runs; another configuration, or a folder that holds other files, is refused.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

STATE_FILE = "demo.json"


class DemoFolderError(ValueError):
    """A folder the demo must not write into (one-line message naming it)."""


@dataclass(frozen=True)
class DemoConfig:
    """Everything that decides a demo run's outputs (stored in ``demo.json``).

    Attributes
    ----------
    minutes
        Wall-clock budget of the whole run on 2 idle cores.
    train_minutes
        The training stage's share of ``minutes``.
    size
        In-plane matrix of the phantoms (the field of view is the same at every size).
    n_train, n_validation, n_test_seen, n_test_unseen
        Phantom cases per split; the test cases are source A ("seen") and B ("unseen").
    max_epochs
        Upper bound on training epochs (the time budget usually stops training first).
    bootstrap
        Bootstrap samples of the ranking.
    seed
        Seed of the phantoms, the training and the bootstrap.
    version
        covseg version that made the folder.
    """

    minutes: float
    train_minutes: float
    size: int
    n_train: int
    n_validation: int
    n_test_seen: int
    n_test_unseen: int
    max_epochs: int
    bootstrap: int
    seed: int
    version: str


def read_state(folder: Path) -> dict[str, Any] | None:
    """The state of a demo folder, None for a new or empty folder.

    Raises
    ------
    DemoFolderError
        When ``folder`` is a file, holds other files than a demo's, or its state is unreadable.
    """
    if folder.exists() and not folder.is_dir():
        raise DemoFolderError(f"{folder}: exists and is not a folder")
    if not folder.is_dir() or not any(folder.iterdir()):
        return None
    path = folder / STATE_FILE
    if not path.is_file():
        raise DemoFolderError(
            f"{folder}: holds other files and no {STATE_FILE}; choose an empty or new folder"
        )
    try:
        state = json.loads(path.read_text())
        if not isinstance(state, dict) or not isinstance(state.get("done"), list):
            raise ValueError("no stage list")
    except (OSError, ValueError) as exc:
        raise DemoFolderError(f"{path}: unreadable demo state ({exc}); use a new folder") from None
    return state


def check_config(folder: Path, state: dict[str, Any] | None, config: DemoConfig) -> list[str]:
    """The stages already done in ``folder`` for ``config`` (empty for a new folder).

    Raises
    ------
    DemoFolderError
        When the folder was made by a demo run with other settings.
    """
    if state is None:
        return []
    stored = state.get("config", {})
    wanted = asdict(config)
    differ = sorted(k for k in wanted if stored.get(k) != wanted[k])
    if differ:
        settings = ", ".join(f"{k}={stored.get(k)!r}" for k in differ)
        raise DemoFolderError(
            f"{folder}: made by a demo run with other settings ({settings}); rerun with the same "
            "options to resume, or choose another folder"
        )
    return [str(s) for s in state["done"]]


def write_state(folder: Path, config: DemoConfig, done: list[str]) -> None:
    """Record ``done`` atomically, so that a crash never leaves a half-written state file."""
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{STATE_FILE}.tmp"
    tmp.write_text(json.dumps({"config": asdict(config), "done": done}, indent=2) + "\n")
    os.replace(tmp, folder / STATE_FILE)


def clear(paths: list[Path]) -> None:
    """Delete a stage's partial outputs before it runs again."""
    for path in paths:
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def check_disk(folder: Path, needed_bytes: int) -> None:
    """Refuse to start when the file system of ``folder`` has less than ``needed_bytes`` free."""
    probe = folder
    while not probe.exists():
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if free < needed_bytes:
        raise DemoFolderError(
            f"{folder}: {free / 1e6:.0f} MB free, the demo needs about {needed_bytes / 1e6:.0f} MB"
        )
