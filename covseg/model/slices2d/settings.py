"""A typed view of a ``slices-2d`` plan's ``training`` section: defaults and checks in one place.

The plan stays the dict read from YAML (it is written back as it came); :class:`Training` is what
the code reads, so a missing optional key has one default and a bad value one message.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from covseg.model.slices2d.data import CLASS_FOLDER

#: ``training.loss`` of the 2D preset: the overlap term beside (B)CE.
LOSSES = ("bce_dice", "bce_noise_robust_dice")

Classes = Literal[True, False, "mixed"]


@dataclass(frozen=True)
class Training:
    """The ``training`` section of a slices-2d plan (see ``presets/slices-2d.yaml``).

    Parameters
    ----------
    iterations
        Random batches a network is trained for (the most; a time budget may cut it).
    batch_size
        Slices a batch.
    learning_rate, weight_decay
        AdamW's.
    members
        Networks a fold (seeds apart), averaged.
    classes
        ``True``: every network also learns ground glass / consolidation; ``"mixed"``: every
        second one; ``False``: none.
    loss
        One of :data:`LOSSES`.
    batch_dice
        The Dice term over the whole batch (else the mean of each slice's).
    ema_decay
        > 0: predict with an exponential moving average of the weights.
    augment, bf16
        Augment batches; bfloat16 autocast where the CPU has it natively.
    max_minutes
        Wall-clock budget of the whole run (``None``: none).
    device
        Where networks train (``"cpu"``, ``"cuda"``); the benchmarks' GPU runs.
    """

    folds: int
    split_seed: int
    seed: int
    iterations: int
    batch_size: int
    learning_rate: float
    weight_decay: float
    members: int = 1
    classes: Classes = False
    loss: str = "bce_dice"
    batch_dice: bool = True
    ema_decay: float = 0.0
    augment: bool = False
    bf16: bool = False
    max_minutes: float | None = None
    fold_processes: int | str | None = "auto"
    device: str = "cpu"

    @classmethod
    def of(cls, plan: dict[str, Any]) -> Training:
        """The checked view of ``plan["training"]``; raises ValueError naming a bad value."""
        t = plan["training"]
        classes = t.get("classes", False)
        if not (isinstance(classes, bool) or classes == "mixed"):
            raise ValueError(f"training.classes must be true, false or mixed, got {classes!r}")
        members = int(t.get("members", 1))
        if members < 1:
            raise ValueError(f"training.members must be at least 1, got {members}")
        loss = str(t.get("loss", "bce_dice"))
        if loss not in LOSSES:
            raise ValueError(f"training.loss is {loss!r}: use {' or '.join(LOSSES)}")
        budget = t.get("max_minutes")
        return cls(
            folds=int(t["folds"]),
            split_seed=int(t["split_seed"]),
            seed=int(t["seed"]),
            iterations=int(t["iterations"]),
            batch_size=int(t["batch_size"]),
            learning_rate=float(t["learning_rate"]),
            weight_decay=float(t["weight_decay"]),
            members=members,
            classes=classes,
            loss=loss,
            batch_dice=bool(t.get("batch_dice", True)),
            ema_decay=float(t.get("ema_decay", 0.0)),
            augment=bool(t.get("augment", False)),
            bf16=bool(t.get("bf16", False)),
            max_minutes=float(budget) if budget else None,
            fold_processes=t.get("fold_processes", "auto"),
            device=str(t.get("device", "cpu")),
        )

    @property
    def uses_classes(self) -> bool:
        """Whether some network learns the lesion classes (the ``classes/`` maps are needed)."""
        return self.classes is not False

    def learns_classes(self, member: int) -> bool:
        """Whether network ``member`` of a fold learns the lesion classes: all of them with
        ``classes: true``, every second one (1, 3 ...) with ``mixed``, none otherwise."""
        return self.classes is True or (self.classes == "mixed" and member % 2 == 1)


def uses_classes(plan: dict[str, Any]) -> bool:
    """Whether some of the plan's networks learn the lesion classes (``training.classes``:
    ``true`` or ``mixed``; default false), so the folder's ``classes/`` maps are needed."""
    return Training.of(plan).uses_classes


def members(plan: dict[str, Any]) -> int:
    """Networks trained per fold (``training.members``, default 1)."""
    return Training.of(plan).members


def resolve_classes(plan: dict[str, Any], data_dir: Path) -> tuple[dict[str, Any], str | None]:
    """The plan to train on ``data_dir`` and a note, or none: ``training.classes: mixed``
    without a ``classes/`` folder there becomes ``false`` (a binary ensemble)."""
    if plan["training"].get("classes") == "mixed" and not (data_dir / CLASS_FOLDER).is_dir():
        note = (
            f"{data_dir}: no {CLASS_FOLDER}/ maps, so every network learns the lesion only "
            "(training.classes: mixed -> false)"
        )
        return {**plan, "training": {**plan["training"], "classes": False}}, note
    return plan, None
