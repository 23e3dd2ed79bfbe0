"""Pseudo-labels for unlabelled scans (the COVID-19-20 winner's semi-supervised recipe).

A trained model segments each unlabelled scan; scans whose prediction is confident enough are
written as a labelled dataset (COVID-19-20 layout) that ``covseg train --extra`` adds to the
training cases of every fold (never to validation).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True)
class PseudoLabel:
    """The outcome for one scan: its confidence (0..1), whether it was kept, or why it failed."""

    case_id: str
    confidence: float
    kept: bool
    error: str | None = None


def confidence(
    probability: npt.NDArray[np.floating], lung: npt.NDArray[np.generic] | None
) -> float:
    """How sure the model is: mean of max(p, 1 - p) over the voxels where either the lesion
    probability exceeds 0.1 or, with a lung mask, inside the lungs.

    1.0 means every such voxel was predicted with certainty; 0.5 is a coin toss. A scan with no
    such voxel (a clear healthy prediction) scores 1.0.
    """
    region = probability > 0.1
    if lung is not None:
        region |= np.asarray(lung) != 0
    if not region.any():
        return 1.0
    p = probability[region]
    return float(np.maximum(p, 1.0 - p).mean())


def pseudo_label_scan(
    case_id: str,
    image: Path,
    nets: list[Any],
    plan: dict[str, Any],
    out_dir: Path,
    min_confidence: float,
) -> PseudoLabel:
    """Segment one scan; when confident, write ``<case>_ct.nii.gz`` and ``<case>_seg.nii.gz``."""
    from covseg.io import VolumeReadError, read_volume, write_mask, write_volume
    from covseg.model.predict import segment

    try:
        ct = read_volume(image)
        result = segment(ct, nets, plan, path=image, probability=True)
    except (VolumeReadError, ValueError) as exc:
        message = str(exc)
        return PseudoLabel(
            case_id, 0.0, False, message if str(image) in message else f"{image}: {message}"
        )
    assert result.probability is not None
    lung = None if result.lung is None else result.lung.array
    score = confidence(np.asarray(result.probability.array), lung)
    kept = score >= min_confidence
    if kept:
        write_volume(ct, out_dir / f"{case_id}_ct.nii.gz")
        write_mask(result.mask.array, ct, out_dir / f"{case_id}_seg.nii.gz")
    return PseudoLabel(case_id, round(score, 4), kept)
