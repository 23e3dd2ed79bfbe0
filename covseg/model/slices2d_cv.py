"""K-fold cross-validation of the ``slices-2d`` recipe, with the optional pseudo-label stage.

Each fold trains ``training.members`` networks (seeds apart) on the other folds' slices and
scores their mean probability; with pseudo-labels enabled, these teachers label the unlabelled
slices (mirror TTA, threshold 0.5) and each is fine-tuned on labelled plus pseudo-labelled
slices. Out-of-fold probabilities are kept at the slices' original sizes, so the
Dice is measured exactly as it would be on new slices.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from covseg.model.slices2d_data import DICOM_SUFFIXES, IMAGE_SUFFIXES, read_slice
from covseg.model.slices2d_net import (
    inference_sizes,
    predict_maps,
    predict_slices,
    targets_from_maps,
    to_tensor,
    train_network,
)


@dataclass
class FoldResult:
    """A trained fold: its validation slices, its members' weights and out-of-fold probabilities.

    ``probs`` maps a variant name to one probability map per validation slice: ``tta`` (the
    fold's members with mirror TTA, at the plan's ``inference.scales``), ``no_tta``, ``final``
    (one of those two, as the plan's ``inference.tta`` says), ``one_scale`` (as ``final``, at
    ``image_size`` only), and with pseudo-labels ``teacher`` (before fine-tuning)
    and, when asked for, ``control`` (fine-tuned as long, without the pseudo-labelled slices).
    A model trained with classes adds ``consolidation`` (probability, as ``final`` is made).
    """

    fold: int
    val_index: list[int]
    states: list[dict[str, torch.Tensor]]
    probs: dict[str, list[npt.NDArray[np.float32]]] = field(default_factory=dict)


def fold_assignment(n: int, folds: int, seed: int) -> npt.NDArray[np.int64]:
    """Fold number of each of ``n`` slices: a seeded shuffle dealt round-robin."""
    order = np.random.default_rng(seed).permutation(n)
    assignment = np.empty(n, dtype=np.int64)
    assignment[order] = np.arange(n) % folds
    return assignment


def unlabelled_images(data_dir: Path, plan: dict[str, Any]) -> list[npt.NDArray[np.uint8]]:
    """The 8-bit unlabelled slices for pseudo-labelling (DICOM in HU converted), or none.

    ``pseudo_labels.unlabelled_dir`` is read relative to ``data_dir``; its files may lie in
    sub-folders (one per patient).
    """
    cfg = plan.get("pseudo_labels", {})
    if not cfg.get("enabled"):
        return []
    folder = (data_dir / cfg["unlabelled_dir"]).resolve()
    if not folder.is_dir():
        raise ValueError(f"{folder}: unlabelled folder for pseudo-labels not found")
    suffixes = IMAGE_SUFFIXES + DICOM_SUFFIXES
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in suffixes)
    if not files:
        raise ValueError(f"{folder}: no PNG/JPG/DICOM slices for pseudo-labels")
    return [read_slice(p) for p in files]


def _oof(
    nets: list[torch.nn.Module],
    images: list[npt.NDArray[np.uint8]],
    sizes: list[int],
    tta: bool,
    bf16: bool,
) -> list[npt.NDArray[np.float32]]:
    """Out-of-fold maps (C, H, W) at the slices' own sizes: the lesion, then consolidation."""
    return predict_slices(nets, images, sizes, tta=tta, bf16=bf16)


def run_fold(
    fold: int,
    assignment: npt.NDArray[np.int64],
    images: torch.Tensor,
    masks: torch.Tensor,
    originals: list[npt.NDArray[np.uint8]],
    unlabelled: torch.Tensor | None,
    plan: dict[str, Any],
    control: bool = False,
    log: bool = False,
) -> FoldResult:
    """Train fold ``fold`` (teacher, then the pseudo-label stage if ``unlabelled`` is given).

    ``images`` and ``masks`` are the resized slices; ``originals`` the slices as read, which the
    out-of-fold maps are predicted from (at each of the plan's inference sizes).
    """
    train_idx = torch.from_numpy(np.flatnonzero(assignment != fold))
    val_index = np.flatnonzero(assignment == fold).tolist()
    val_images, sizes = [originals[i] for i in val_index], inference_sizes(plan)
    # Member 0 keeps the seed of a one-member plan, so members=1 reproduces it exactly.
    seeds = [plan["training"]["seed"] * 100 + fold + 1000 * m for m in range(members(plan))]
    # Target channels of each member: 1 (lesion) or, for those that learn classes, all of them.
    channels = [masks.shape[1] if learns_classes(plan, m) else 1 for m in range(len(seeds))]
    bf16 = plan["training"]["bf16"]
    nets = [
        train_network(
            images[train_idx],
            masks[train_idx, :c],
            plan,
            seed,
            log=log,
            label=f"fold {fold} " + (f"member {m} " if len(seeds) > 1 else ""),
        )
        for m, (seed, c) in enumerate(zip(seeds, channels, strict=True))
    ]
    result = FoldResult(fold, val_index, [net.state_dict() for net in nets])
    if unlabelled is not None:
        result.probs["teacher"] = _lesion(_oof(nets, val_images, sizes, True, bf16))
        pseudo = targets_from_maps(predict_maps(nets, unlabelled, tta=True, bf16=bf16))
        teachers = result.states

        def fine_tune(x: torch.Tensor, y: torch.Tensor) -> list[torch.nn.Module]:
            """Each teacher trained further on ``x``, ``y`` for the pseudo-label stage's steps."""
            steps = plan["pseudo_labels"]["iterations"]
            return [
                train_network(x, y[:, :c], plan, seed + 1, state, steps)
                for seed, state, c in zip(seeds, teachers, channels, strict=True)
            ]

        if control:
            controls = fine_tune(images[train_idx], masks[train_idx])
            result.probs["control"] = _lesion(_oof(controls, val_images, sizes, True, bf16))
        nets = fine_tune(
            torch.cat([images[train_idx], unlabelled]),
            torch.cat([masks[train_idx, : pseudo.shape[1]], pseudo]),
        )
        result.states = [net.state_dict() for net in nets]
    tta = _oof(nets, val_images, sizes, True, bf16)
    no_tta = _oof(nets, val_images, sizes, False, bf16)
    result.probs["tta"], result.probs["no_tta"] = _lesion(tta), _lesion(no_tta)
    final = tta if plan["inference"]["tta"] else no_tta
    result.probs["final"] = _lesion(final)
    one = _oof(nets, val_images, [int(plan["image_size"])], plan["inference"]["tta"], bf16)
    result.probs["one_scale"] = _lesion(one)
    if final[0].shape[0] == 2:  # some member learnt the classes
        result.probs["consolidation"] = [m[1] for m in final]
    return result


def _lesion(maps: list[npt.NDArray[np.float32]]) -> list[npt.NDArray[np.float32]]:
    return [m[0] for m in maps]


def learns_classes(plan: dict[str, Any], member: int) -> bool:
    """Whether network ``member`` of a fold learns the lesion classes: all of them with
    ``training.classes: true``, every second one (1, 3 ...) with ``mixed``, none otherwise."""
    value = plan["training"].get("classes", False)
    return value is True or (value == "mixed" and member % 2 == 1)


def members(plan: dict[str, Any]) -> int:
    """Networks trained per fold (``training.members``, default 1)."""
    count = int(plan["training"].get("members", 1))
    if count < 1:
        raise ValueError(f"training.members must be at least 1, got {count}")
    return count


def prepare(
    images: list[npt.NDArray[np.uint8]],
    masks: list[npt.NDArray[np.bool_]],
    size: int,
    consolidation: list[npt.NDArray[np.bool_]] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Resized images (N, 1, S, S) and targets (N, C, S, S).

    The targets are the lesion masks, and with ``consolidation`` a second channel of it (kept
    inside the resized lesion).
    """
    targets = to_tensor(masks, size, mask=True)
    if consolidation is not None:
        solid = to_tensor(consolidation, size, mask=True) * targets
        targets = torch.cat([targets, solid], dim=1)
    return to_tensor(images, size, mask=False), targets
