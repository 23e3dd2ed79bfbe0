"""Random-number states of a training run, so that ``--resume`` goes on where it stopped.

A resumed run restores the generators that choose its batches, crops, augmentation and dropout
(torch's, CUDA's where present, NumPy's, Python's and each random MONAI transform's) and so
repeats, step for step, the run that was not interrupted (on a GPU as far as its kernels are
deterministic). The states are stored as tensors and plain numbers, which
``torch.load(weights_only=True)`` reads back.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


def capture(transform: Any) -> dict[str, Any]:
    """The states of the global generators and of ``transform``'s random MONAI transforms."""
    return {
        "torch": torch.get_rng_state(),
        # The legacy global state: the one monai.utils.set_determinism seeds.
        "numpy": _numpy_state(np.random.get_state()),  # noqa: NPY002
        "python": random.getstate(),
        "transforms": [_numpy_state(t.R.get_state()) for t in _random_parts(transform)],
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def restore(state: dict[str, Any], transform: Any) -> bool:
    """Set the generators back to ``state`` (from :func:`capture` on the same transform chain).

    Returns False, changing nothing, when the chain has other random transforms than the one
    captured (a plan changed on resume): the run then goes on from its fresh seeds.
    """
    parts = _random_parts(transform)
    if len(parts) != len(state["transforms"]):
        return False
    torch.set_rng_state(state["torch"])
    np.random.set_state(_numpy_tuple(state["numpy"]))  # noqa: NPY002
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    for part, saved in zip(parts, state["transforms"], strict=True):
        part.R.set_state(_numpy_tuple(saved))
    cuda = state.get("cuda", [])
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    return True


def _random_parts(transform: Any) -> list[Any]:
    """Every object of a MONAI transform chain that draws from its own generator (``R``).

    Random dictionary transforms hold inner array transforms with generators of their own
    (``RandAffined`` -> ``RandAffine`` -> ``RandAffineGrid``), so the chain is walked the way
    MONAI's ``set_rnd`` seeds it: through lists, tuples and attributes, each object once.
    """
    found: list[Any] = []
    seen: set[int] = set()

    def walk(obj: Any) -> None:
        if id(obj) in seen:
            return
        seen.add(id(obj))
        if isinstance(obj, (list, tuple)):
            for item in obj:
                walk(item)
            return
        if isinstance(getattr(obj, "R", None), np.random.RandomState):
            found.append(obj)
        if hasattr(obj, "__dict__") and not isinstance(obj, (type, torch.Tensor, np.ndarray)):
            for value in vars(obj).values():
                walk(value)

    walk(transform)
    return found


def _numpy_state(state: Any) -> dict[str, Any]:
    """A legacy NumPy (MT19937) state as a tensor and plain numbers."""
    name, keys, pos, has_gauss, cached = state
    return {
        "name": str(name),
        "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
        "pos": int(pos),
        "has_gauss": int(has_gauss),
        "cached_gaussian": float(cached),
    }


def _numpy_tuple(state: dict[str, Any]) -> tuple[Any, ...]:
    keys = state["keys"].numpy().astype(np.uint32)
    return (state["name"], keys, state["pos"], state["has_gauss"], state["cached_gaussian"])
