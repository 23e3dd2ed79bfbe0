"""One demo run: its folder, settings and console, and the outputs of earlier stages."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from covseg.demo.state import DemoConfig


@dataclass
class Run:
    """One demo run: its folder, settings and console."""

    folder: Path
    config: DemoConfig
    console: Console

    @property
    def data(self) -> Path:
        """The phantom dataset (COVID-19-20 layout)."""
        return self.folder / "data"

    def test_cases(self) -> list[Any]:
        """The labelled test cases, seen then unseen."""
        from covseg.datasets import find_cases

        return find_cases(self.data / "Test", require_labels=True)


def read_json(path: Path) -> Any:
    """A JSON file written by an earlier stage."""
    return json.loads(path.read_text())
