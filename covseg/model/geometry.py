"""Between a scan's own grid and the model's grid (orientation, spacing, intensity), and back.

The forward path reorients (exact axis permutations and flips, as MONAI ``Orientation``) and
resamples with MONAI ``Spacing``; the way back resamples onto the reoriented input grid and
undoes the reorientation, so a mask comes out with exactly the input's shape and affine, whatever
its orientation, spacing or obliquity.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from nibabel import orientations as ornt

from covseg.io import Volume


@dataclass
class ModelGrid:
    """How a scan maps onto the model grid: enough to bring a prediction back.

    Parameters
    ----------
    to_model
        nibabel orientation transform from the scan's axes to the plan's axis codes.
    oriented_affine
        Affine (RAS+, mm) of the reoriented scan.
    oriented_shape
        Shape of the reoriented scan (voxels).
    model_affine
        Affine of the resampled (model-grid) array.
    """

    to_model: npt.NDArray[np.float64]
    oriented_affine: npt.NDArray[np.float64]
    oriented_shape: tuple[int, int, int]
    model_affine: npt.NDArray[np.float64]


def normalize(hu: torch.Tensor, spec: dict[str, Any]) -> torch.Tensor:
    """Map HU to network input: a window scaled to 0..1 (baseline) or a z-score (``auto``).

    ``spec`` is the plan's ``preprocessing.intensity``: ``hu_min``/``hu_max``/``clip`` for the
    window, or ``kind: zscore`` with ``clip_min``/``clip_max``/``mean``/``std`` (HU).
    """
    if spec.get("kind", "window") == "zscore":
        clipped = hu.clamp(float(spec["clip_min"]), float(spec["clip_max"]))
        return (clipped - float(spec["mean"])) / float(spec["std"])
    lo, hi = float(spec["hu_min"]), float(spec["hu_max"])
    scaled = (hu - lo) / (hi - lo)
    return scaled.clamp(0.0, 1.0) if spec.get("clip", True) else scaled


def to_model_grid(
    volume: Volume, plan: dict[str, Any], *, label: bool = False
) -> tuple[torch.Tensor, ModelGrid]:
    """Reorient and resample ``volume`` to the plan's grid: a (1, X, Y, Z) float32 tensor.

    Images are resampled bilinearly and normalised; labels (``label=True``) by nearest neighbour.
    """
    from monai.data import MetaTensor
    from monai.transforms import Spacing

    pre = plan["preprocessing"]
    array = np.asarray(volume.array)
    if array.ndim != 3:
        raise ValueError(f"expected a 3D volume, got shape {array.shape}")
    start = ornt.io_orientation(volume.affine)
    to_model = ornt.ornt_transform(start, ornt.axcodes2ornt(tuple(pre["orientation"])))
    oriented = ornt.apply_orientation(array, to_model)
    oriented_affine = volume.affine @ ornt.inv_ornt_aff(to_model, array.shape)
    tensor = MetaTensor(
        torch.from_numpy(np.ascontiguousarray(oriented, dtype=np.float32))[None],
        affine=torch.as_tensor(oriented_affine, dtype=torch.float64),
    )
    mode = "nearest" if label else "bilinear"
    resampled = Spacing(pixdim=tuple(pre["spacing_mm"]), mode=mode)(tensor)
    assert isinstance(resampled, MetaTensor)
    grid = ModelGrid(
        to_model,
        oriented_affine,
        tuple(oriented.shape),
        resampled.affine.numpy().astype(np.float64),
    )
    out = resampled.as_tensor()
    if not label:
        out = normalize(out, pre["intensity"])
    return out.contiguous(), grid


def to_input_grid(model_array: torch.Tensor, grid: ModelGrid, *, mode: str) -> np.ndarray:
    """Bring a (C, X, Y, Z) model-grid array back onto the scan's own grid: (C, I, J, K).

    ``mode`` is ``"nearest"`` for labels and ``"bilinear"`` for probabilities.
    """
    from monai.data import MetaTensor
    from monai.transforms import SpatialResample

    src = MetaTensor(model_array.float(), affine=torch.as_tensor(grid.model_affine))
    back = SpatialResample(mode=mode, padding_mode="border")(
        src, dst_affine=torch.as_tensor(grid.oriented_affine), spatial_size=grid.oriented_shape
    )
    array = back.detach().cpu().numpy() if isinstance(back, torch.Tensor) else np.asarray(back)
    inverse = _inverse_ornt(grid.to_model)
    return np.stack([ornt.apply_orientation(channel, inverse) for channel in array])


def _inverse_ornt(t: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """The orientation transform that undoes ``t`` (a permutation with flips)."""
    inverse = np.zeros_like(t)
    for axis, (target, flip) in enumerate(t):
        inverse[int(target)] = (axis, flip)
    return inverse


def crop_box(ct: Volume, lung: Volume, margin_mm: float) -> tuple[slice, ...]:
    """Index box of the lungs grown by ``margin_mm`` (mm) on each side."""
    from covseg.lung import lung_bounding_box

    return tuple(lung_bounding_box(lung.array, ct.spacing, margin_mm))


def sub_volume(ct: Volume, box: tuple[slice, ...]) -> Volume:
    """The crop ``ct.array[box]`` with an affine that keeps every voxel where it was."""
    shift = np.eye(4)
    shift[:3, 3] = [s.start or 0 for s in box]
    return Volume(ct.array[box], ct.affine @ shift)
