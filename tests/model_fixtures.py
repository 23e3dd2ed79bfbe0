"""Helpers for the model tests: small model folders with seeded random weights."""

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from covseg.model.inference import CHECKPOINT_FORMAT
from covseg.model.networks import build_network
from covseg.model.plan import apply_overrides, load_preset, write_plan

TINY = [
    "network.features=[4, 4, 8, 8, 8, 4]",
    "preprocessing.spacing_mm=[6.0, 6.0, 5.0]",
    "inference.roi_size=[32, 32, 16]",
]


def tiny_model(folder: Path, *overrides: str, folds: int = 1) -> Path:
    """A model folder with random weights (seeded) and a small network."""
    plan = apply_overrides(load_preset("baseline"), [*TINY, *overrides])
    write_plan(plan, folder)
    for fold in range(folds):
        torch.manual_seed(fold)
        state = {"format": CHECKPOINT_FORMAT, "model": build_network(plan).state_dict()}
        (folder / f"fold_{fold}").mkdir()
        torch.save(state, folder / f"fold_{fold}" / "best.pt")
    return folder


@pytest.fixture()
def one_thread() -> Iterator[None]:
    """Run torch on one thread: on 2 cores shared with other jobs, 2 OpenMP threads ran up to
    10x slower than 1 (they wait on each other whenever one is descheduled)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def disk_slice(rng: np.random.Generator, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """A grey 'body' with one bright disk (the lesion) on noise: an easy synthetic 8-bit slice."""
    rows, cols = np.mgrid[: shape[0], : shape[1]]
    cy, cx = rng.uniform(0.3, 0.7) * shape[0], rng.uniform(0.3, 0.7) * shape[1]
    radius = rng.uniform(0.1, 0.2) * min(shape)
    mask = (rows - cy) ** 2 + (cols - cx) ** 2 < radius**2
    image = 60 + 120 * mask + rng.normal(0, 12, shape)
    return np.clip(image, 0, 255).astype(np.uint8), mask
