"""Segment one CT: lung crop, model grid, ensemble inference, back to the CT's own grid."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from covseg.io import Volume
from covseg.model.data import check_ct
from covseg.model.geometry import crop_box, sub_volume, to_input_grid, to_model_grid
from covseg.model.inference import predict_probabilities
from covseg.model.plan import CHOICES, PlanError
from covseg.model.postprocess import postprocess


@dataclass
class Segmentation:
    """A predicted lesion mask with the CT's exact geometry.

    Parameters
    ----------
    mask
        uint8 0/1 lesion mask, the CT's shape and affine.
    probability
        float32 lesion probability (0..1) on the CT's grid, when asked for.
    lung
        Lung labels (0/1 right/2 left) when they were computed (cropping or post-processing).
    """

    mask: Volume
    probability: Volume | None = None
    lung: Volume | None = None


def segment(
    ct: Volume,
    nets: list[torch.nn.Module],
    plan: dict[str, Any],
    *,
    path: str | Path = "CT",
    lung_crop: bool | None = None,
    tta: bool | None = None,
    bf16: bool | None = None,
    probability: bool = False,
    device: torch.device | None = None,
) -> Segmentation:
    """Segment the lesions of ``ct`` (HU) with a fold ensemble; ``None`` options follow the plan.

    The mask is computed inside the thorax box (when ``lung_crop``), written back into a
    full-size array and post-processed as the plan says.
    """
    from covseg.lung import lung_mask, thorax_mask

    infer, post = plan["inference"], plan["postprocess"]
    lung_crop = infer.get("lung_crop", False) if lung_crop is None else lung_crop
    tta = infer.get("tta", False) if tta is None else tta
    bf16 = infer.get("bf16", False) if bf16 is None else bf16
    resample = infer.get("resample", "labels")
    if resample not in CHOICES["inference.resample"]:
        raise PlanError(f"inference.resample is {resample!r}: use labels or probabilities")
    check_ct(ct, path)
    lung = lung_mask(ct, path) if lung_crop or post.get("outside_lung") else None
    # Crop and post-process with the thorax, not the lung mask: a lesion is never lost because
    # the lung mask missed dense lung.
    thorax = None if lung is None else thorax_mask(ct, lung, path)
    box: tuple[slice, ...] = tuple(slice(0, n) for n in ct.shape)
    if lung_crop and thorax is not None:
        box = crop_box(ct, thorax, float(infer["lung_margin_mm"]))
    image, grid = to_model_grid(sub_volume(ct, box), plan)
    prob = predict_probabilities(image, nets, plan, tta=tta, bf16=bf16, device=device)
    # nnU-Net's way: class probabilities interpolated onto the scan's grid, then argmax, so a
    # finer input grid gets smooth boundaries instead of the model grid's staircase.
    back = to_input_grid(prob, grid, mode="bilinear") if resample == "probabilities" else None
    if back is not None:
        label = back.argmax(0)
    else:  # the baseline's way (argmax, then Invertd with nearest neighbour)
        label = to_input_grid(prob.argmax(0, keepdim=True).to(torch.uint8), grid, mode="nearest")[0]
    mask = np.zeros(ct.shape, dtype=bool)
    mask[box] = label > 0.5
    mask = postprocess(
        mask,
        post,
        voxel_ml=ct.voxel_volume_ml,
        spacing=ct.spacing,
        lung=None if thorax is None else thorax.array,
    )
    result = Segmentation(ct.with_array(mask.astype(np.uint8)), lung=lung)
    if probability:
        full = np.zeros(ct.shape, dtype=np.float32)
        full[box] = (
            back[1:].sum(0)  # already on the scan's grid
            if back is not None
            else to_input_grid(prob[1:].sum(0, keepdim=True), grid, mode="bilinear")[0]
        )
        result.probability = ct.with_array(full)
    return result
