"""Training data: k-fold splits by case, and cases loaded onto the model grid.

A case that cannot be used raises :class:`covseg.datasets.CaseError` naming the file.
"""

from __future__ import annotations

import random
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from covseg.datasets import Case, CaseError
from covseg.io import GridMismatchError, Volume, read_volume, to_reference_grid
from covseg.model.geometry import crop_box, sub_volume, to_model_grid


def make_folds(cases: list[Case], n_folds: int, seed: int) -> list[list[str]]:
    """Validation case ids of each of ``n_folds`` folds, disjoint and covering every case.

    Deterministic for a given ``seed`` and case list; stratified by source (each source's cases
    are shuffled and dealt round-robin, continuing across sources) so every fold sees every
    source in proportion.
    """
    if n_folds < 2:
        raise ValueError(f"need at least 2 folds, got {n_folds}")
    if len(cases) < n_folds:
        raise ValueError(f"{len(cases)} labelled cases cannot make {n_folds} folds")
    by_source: dict[str, list[str]] = defaultdict(list)
    for case in cases:
        by_source[case.source].append(case.case_id)
    rng = random.Random(seed)
    folds: list[list[str]] = [[] for _ in range(n_folds)]
    dealt = 0
    for source in sorted(by_source):
        ids = sorted(by_source[source])
        rng.shuffle(ids)
        for case_id in ids:
            folds[dealt % n_folds].append(case_id)
            dealt += 1
    return [sorted(fold) for fold in folds]


def check_ct(volume: Volume, path: object) -> None:
    """Refuse what cannot be a 3D CT in HU: 2D images, single slices, 8-bit pictures."""
    if volume.array.ndim != 3 or min(volume.shape) < 2:
        raise CaseError(f"{path}: not a 3D CT (shape {volume.shape})")
    low = float(np.min(volume.array))
    if low > -500.0:
        raise CaseError(
            f"{path}: not a CT in HU (lowest value {low:g}; air should be near -1000 HU)"
        )


def load_case(case: Case, plan: dict[str, Any]) -> dict[str, Any]:
    """Read a labelled case and bring image and label onto the model grid.

    Returns ``{"image": (1, X, Y, Z) float32, "label": (1, X, Y, Z) uint8, "case_id": str}``.
    """
    if case.image is None or case.label is None:
        raise CaseError(f"{case.image or case.label}: case {case.case_id} has no image or label")
    image = read_volume(case.image)
    check_ct(image, case.image)
    try:  # a label stored in another axis order (another tool's) is reoriented exactly
        label = to_reference_grid(
            read_volume(case.label), image, reference_name="its image", atol_mm=1e-2
        )
    except GridMismatchError as exc:
        raise CaseError(f"{case.label}: label does not match its image: {exc}") from None
    values = np.unique(label.array)
    if not np.isin(values, (0, 1)).all():
        raise CaseError(f"{case.label}: label values {values[:6].tolist()} (expected 0/1)")
    if plan["training"].get("lung_crop"):
        image, label = _lung_box(image, label, plan, case.image)
    x, _ = to_model_grid(image, plan)
    y, _ = to_model_grid(label, plan, label=True)
    return {"image": x, "label": y.to(torch.uint8), "case_id": case.case_id}


def _lung_box(
    image: Volume, label: Volume, plan: dict[str, Any], path: Path
) -> tuple[Volume, Volume]:
    """Image and label cropped to the lung box that ``covseg predict`` segments in.

    Training on what prediction sees: the negative patches then show lung, pleura and vessels,
    the tissue the network must tell lesions from, instead of air and body wall that prediction
    never shows it.
    """
    from covseg.lung import thorax_mask

    thorax = thorax_mask(image, path=path)  # a scan without lungs: ValueError naming the file
    box = crop_box(image, thorax, float(plan["inference"]["lung_margin_mm"]))
    return sub_volume(image, box), sub_volume(label, box)
