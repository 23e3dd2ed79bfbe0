"""The training augmentation of a plan, as a MONAI transform chain on ``image``/``label``."""

from __future__ import annotations

from typing import Any


def train_transforms(plan: dict[str, Any]) -> Any:
    """MONAI ``Compose`` of the plan's augmentation (the baseline's chain, in its order).

    Input: a dict with ``image`` (1, X, Y, Z) float and ``label`` (1, X, Y, Z) on the model grid;
    output: ``crop_samples`` dicts of ``crop_size`` patches.
    """
    import torch
    from monai.transforms import (
        CastToTyped,
        Compose,
        RandAffined,
        RandCropByPosNegLabeld,
        RandFlipd,
        RandGaussianNoised,
        SpatialPadd,
    )

    aug = plan["augmentation"]
    keys = ("image", "label")
    # The baseline pads in-plane only; covseg also pads thin volumes to the crop's slice count
    # so that every crop has the same size.
    pad = [*aug["pad_to"], aug["crop_size"][2]]
    chain = [
        SpatialPadd(keys, spatial_size=pad, mode=aug["pad_mode"]),
        RandAffined(
            keys,
            prob=float(aug["affine_prob"]),
            rotate_range=[float(r) for r in aug["rotate_range_rad"]],
            scale_range=[float(s) for s in aug["scale_range"]],
            mode=("bilinear", "nearest"),
        ),
        RandCropByPosNegLabeld(
            keys,
            label_key="label",
            spatial_size=tuple(aug["crop_size"]),
            pos=1,
            neg=1,
            num_samples=int(aug["crop_samples"]),
        ),
        RandGaussianNoised("image", prob=float(aug["noise_prob"]), std=float(aug["noise_std"])),
    ]
    chain += [
        RandFlipd(keys, spatial_axis=a, prob=float(aug["flip_prob"])) for a in aug["flip_axes"]
    ]
    chain.append(CastToTyped(keys, dtype=(torch.float32, torch.uint8)))
    return Compose(chain)
