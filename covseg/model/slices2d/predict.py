"""Apply a ``slices-2d`` fold ensemble to 2D slices: several input sizes, optional mirror TTA.

:func:`load_ensemble` reads a model folder's networks once; :func:`predict_hu_slices` (HU
arrays, e.g. the axial slices of a CT volume) and :func:`predict_8bit_slices` (8-bit slices as
MedSeg ships them) return probability maps at each slice's own size; :func:`label_map` turns
one into the class map (0/1/2) whose non-zero pixels are the lesion mask.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
import yaml

from covseg.model.inference import autocast
from covseg.model.slices2d.data import HU_WINDOW, window_hu
from covseg.model.slices2d.evaluate import class_map
from covseg.model.slices2d.net import make_network, normalise, outputs_of, to_maps, to_tensor

CPU = torch.device("cpu")


@dataclass(frozen=True)
class Ensemble:
    """The networks of a slices-2d model folder and the plan they were trained with.

    ``classes``: whether some network tells consolidation from ground glass (then the maps have
    a second channel).
    """

    nets: list[torch.nn.Module]
    plan: dict[str, Any]
    classes: bool


def load_ensemble(model_dir: Path) -> Ensemble:
    """Every network of ``model_dir`` (``fold_K/model*.pt``), in eval mode on the CPU.

    Raises
    ------
    ValueError
        Without ``plan.yaml`` or weights; the message names the folder.
    """
    plan_path = model_dir / "plan.yaml"
    if not plan_path.is_file():
        raise ValueError(f"{plan_path}: not found (train with --preset slices-2d first)")
    plan = yaml.safe_load(plan_path.read_text())
    weights = sorted(model_dir.glob("fold_*/model*.pt"))
    if not weights:
        raise ValueError(f"{model_dir}: no fold_*/model.pt")
    nets, outputs = [], set()
    for w in weights:
        state = torch.load(w, map_location="cpu", weights_only=True)
        count = outputs_of(state)  # 1, or 3 with classes
        outputs.add(count)
        net = make_network(plan["network"], count)
        net.load_state_dict(state)
        nets.append(net.eval())
    return Ensemble(nets, plan, 3 in outputs)


def predict_hu_slices(
    ensemble: Ensemble,
    slices: Sequence[npt.NDArray[np.floating]],
    boxes: Sequence[tuple[slice, slice]],
    scales: str = "scales",
) -> list[npt.NDArray[np.float32]]:
    """Probability maps (C, H, W) of 2D HU slices, each at its own full size.

    Each slice is cropped to its box (the field the networks learnt on,
    :func:`~covseg.model.slices2d.data.field_box`), windowed to 8 bits with the plan's
    ``hu_window`` and predicted as :func:`predict_8bit_slices` does; outside the box the maps
    are 0. The plan's ``inference.min_area_fraction`` (for :func:`label_map`) is a share of the
    box's area, the slice size the networks were trained on.

    Parameters
    ----------
    ensemble
        From :func:`load_ensemble`.
    slices
        2D arrays in HU (any sizes), e.g. the axial slices of a CT volume.
    boxes
        Each slice's field (rows, columns).
    scales
        The plan's ``inference`` key of the input sizes: ``"scales"`` (single slices) or
        ``"volume_scales"`` (the slices of a CT volume, default ``[1.0]``: one size, so a
        300-slice CT takes under a minute on 2 cores; benchmarks/RESULTS.md).

    Returns
    -------
    list of ndarray
        float32 (C, H, W) per slice: channel 0 the lesion probability, and where the ensemble
        has class networks channel 1 the consolidation probability.
    """
    plan = ensemble.plan
    window = tuple(plan.get("hu_window", HU_WINDOW))
    crops = [
        window_hu(np.asarray(s, dtype=np.float32)[box], (float(window[0]), float(window[1])))
        for s, box in zip(slices, boxes, strict=True)
    ]
    maps = predict_slices(
        ensemble.nets,
        crops,
        inference_sizes(plan, scales),
        bool(plan["inference"]["tta"]),
        bool(plan["training"]["bf16"]),
    )
    out = []
    for hu, box, prob in zip(slices, boxes, maps, strict=True):
        full = np.zeros((prob.shape[0], *np.shape(hu)), dtype=np.float32)
        full[(slice(None), *box)] = prob
        out.append(full)
    return out


def predict_8bit_slices(
    ensemble: Ensemble, images: Sequence[npt.NDArray[np.uint8]]
) -> list[npt.NDArray[np.float32]]:
    """Probability maps (C, H, W) of 8-bit slices: the mean over every network, every input
    size of the plan (:func:`inference_sizes`) and, with ``inference.tta``, the 4 mirrorings."""
    plan = ensemble.plan
    return predict_slices(
        ensemble.nets,
        images,
        inference_sizes(plan),
        bool(plan["inference"]["tta"]),
        bool(plan["training"]["bf16"]),
    )


def label_map(ensemble: Ensemble, prob: npt.NDArray[np.floating]) -> npt.NDArray[np.uint8]:
    """Class map (0 background, 1 ground glass, 2 consolidation) of one slice's (C, H, W)
    maps, with the plan's threshold and chosen post-processing; a binary ensemble's lesion is
    all class 1."""
    inference = ensemble.plan["inference"]
    return class_map(
        prob[0],
        prob[1] if ensemble.classes else np.zeros_like(prob[0]),
        inference["threshold"],
        inference.get("min_area_fraction", 0.0),
    )


#: A lesion component is kept where it reaches this far (mm) inside the lung mask.
LUNG_DEPTH_MM = 2.0


def keep_lung_lesions(
    labels: npt.NDArray[np.uint8], lungs: npt.NDArray[np.bool_], pixel_mm: tuple[float, float]
) -> npt.NDArray[np.uint8]:
    """``labels`` (2D, or 3D with axial slices on the last axis) without the lesion components
    that never reach :data:`LUNG_DEPTH_MM` inside ``lungs``.

    Lesions are in the lung, yet networks trained on lung-framed slices mark fat of the chest wall
    and mediastinum, bowel and spleen on a CT's wider field. A component is dropped only when
    none of it lies inside the lung mask eroded in-plane by :data:`LUNG_DEPTH_MM`: consolidation
    the lung mask misses is kept whole as long as the component reaches aerated lung anywhere
    (in 3D, in any slice). On MedSeg's 50 slices (out-of-fold maps of the preset, lung mask on
    the approximate HU of ``benchmarks/bench_lung_coverage.py``) the mean Dice went from
    0.7249 to 0.7255, no slice losing more than 0.004 (benchmarks/RESULTS.md).

    Parameters
    ----------
    labels
        0 background, > 0 lesion (classes kept as they are).
    lungs
        The lung mask, same shape.
    pixel_mm
        In-plane pixel size (mm) along the first two axes.
    """
    from scipy import ndimage

    steps = max(1, round(LUNG_DEPTH_MM / min(pixel_mm)))
    plane = ndimage.generate_binary_structure(2, 1)
    structure = plane if labels.ndim == 2 else plane[:, :, None]
    core = ndimage.binary_erosion(lungs, structure=structure, iterations=steps)
    components, count = ndimage.label(labels > 0)
    if count == 0:
        return labels
    hit = np.zeros(count + 1, dtype=bool)
    hit[np.unique(components[core])] = True
    hit[0] = False
    return np.where(hit[components], labels, 0).astype(np.uint8)


@torch.no_grad()
def predict_maps(
    nets: list[torch.nn.Module], images: torch.Tensor, tta: bool, bf16: bool, batch: int = 8
) -> torch.Tensor:
    """Mean probability maps (N, C, S, S) over ``nets`` and, with ``tta``, the 4 mirrorings.

    Channel 0 is the lesion, the mean over all ``nets``; where some have class outputs, channel 1
    is consolidation, the mean over those (:func:`to_maps`).
    """
    flips: list[tuple[int, ...]] = [()]
    if tta:
        flips += [(-1,), (-2,), (-2, -1)]
    out = []
    weights = next(nets[0].parameters(), None)  # the nets' device (a weightless net: the CPU)
    device = CPU if weights is None else weights.device
    for start in range(0, len(images), batch):
        x = normalise(images[start : start + batch]).to(device)
        maps = []
        for net in nets:
            for dims in flips:
                xi = torch.flip(x, dims) if dims else x
                with autocast(device, bf16):
                    logits = net(xi).float().cpu()
                maps.append(to_maps(torch.flip(logits, dims) if dims else logits))
        lesion = torch.stack([m[:, :1] for m in maps]).mean(dim=0)
        solid = [m[:, 1:] for m in maps if m.shape[1] == 2]
        out.append(torch.cat([lesion, torch.stack(solid).mean(dim=0)], 1) if solid else lesion)
    return torch.cat(out)


def inference_sizes(plan: dict[str, Any], key: str = "scales") -> list[int]:
    """Input sizes (pixels a side) the networks predict at: ``image_size`` times each factor of
    ``inference[key]`` (``scales``, default ``[1.0]``; ``volume_scales`` for the slices of a CT
    volume, default ``[1.0]``), rounded to a multiple of 16 (the U-Net's stride).
    """
    scales = plan["inference"].get(key, [1.0])
    if (
        not isinstance(scales, list)
        or not scales
        or not all(isinstance(f, int | float) and not isinstance(f, bool) and f > 0 for f in scales)
    ):
        raise ValueError(
            f"inference.{key} is {scales!r}: expected a list of positive factors of image_size"
        )
    return [16 * max(1, round(plan["image_size"] * f / 16)) for f in scales]


def predict_slices(
    nets: list[torch.nn.Module],
    images: Sequence[npt.NDArray[Any]],
    sizes: Sequence[int],
    tta: bool,
    bf16: bool,
) -> list[npt.NDArray[np.float32]]:
    """Mean probability maps (C, H, W) of 2D ``images``, each at its own size.

    Each image is resized to every one of ``sizes`` (pixels a side), predicted by all ``nets``
    (with ``tta``, in the 4 mirrorings too), and the maps are averaged at the image's size.
    """
    total: list[npt.NDArray[np.float32]] = []
    for size in sizes:
        maps = predict_maps(nets, to_tensor(images, size, mask=False), tta, bf16)
        for i, (m, image) in enumerate(zip(maps, images, strict=True)):
            prob = restore_size(m, image.shape)
            if len(total) <= i:
                total.append(prob)
            else:
                total[i] += prob
    return [(t / np.float32(len(sizes))).astype(np.float32) for t in total]


def restore_size(maps: torch.Tensor, shape: tuple[int, ...]) -> npt.NDArray[np.float32]:
    """Resize one slice's (C, S, S) probability maps back to its original ``shape``."""
    out = F.interpolate(maps[None], size=tuple(shape), mode="bilinear", align_corners=False)
    return out[0].numpy()
