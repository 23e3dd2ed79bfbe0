"""A ``slices-2d`` model on whole CT volumes: every axial slice of the thorax through the ensemble.

The slice model learnt on single axial slices shown the radiologists' way (anterior at the top,
the patient's right on the image's left), 8-bit, body-cropped and windowed. A CT volume is
segmented slice by slice in exactly that form:

1. The volume is reoriented (flips and transposes only, from the affine's direction) so that
   its slices are the patient's axial planes in display orientation, whatever the file's array
   order: rows run anterior -> posterior, columns right -> left (DICOM's LPS order, in which
   the 2D path reads single DICOM slices).
2. The slices to segment are the thorax's: every axial slice that holds lung
   (:func:`covseg.lung.lung_mask`) plus :data:`covseg.lung.THORAX_MARGIN_MM` above and below
   (:func:`covseg.lung.thorax_slices`), so a lesion at the apex or a consolidated base the lung
   mask misses is still segmented. The other slices are background; a volume without lungs is
   refused.
3. Each slice is cropped to the field the networks learnt on
   (:func:`~covseg.model.slices2d.data.field_box`): the box of the lungs of the slices within
   :data:`FIELD_REACH_MM` of it (so a slice whose lung the mask misses still gets its thorax's
   field; a margin slice gets the nearest lung slice's), at least
   :data:`~covseg.model.slices2d.data.MIN_FIELD_MM` a side.
4. Batches of chosen slices go through
   :func:`~covseg.model.slices2d.predict.predict_hu_slices` (windowed with the model's HU
   window, the fold ensemble at the plan's ``inference.volume_scales``, one size by default),
   then the same threshold, small-component removal and lesion classes as a single slice
   (:func:`~covseg.model.slices2d.predict.label_map`); lesion components (in 3D) that never
   reach inside the lung mask are dropped
   (:func:`~covseg.model.slices2d.predict.keep_lung_lesions`).
5. The labels are put back into the file's array order: the masks have the CT's exact shape and
   affine.

A slice of a volume gets the mask the 2D path gives the same slice as a DICOM file where its own
lungs give the same field and ``volume_scales`` equals ``scales``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from covseg.io import Volume
from covseg.model.slices2d.data import DISPLAY, field_box, grow_field
from covseg.model.slices2d.predict import (
    Ensemble,
    keep_lung_lesions,
    label_map,
    predict_hu_slices,
)

#: Slices per batch through the ensemble (the networks batch 8 of them at a time inside).
BATCH_SLICES = 32
#: A slice's field is the box of the lungs within this distance (mm) above and below it.
FIELD_REACH_MM = 10.0


@dataclass
class VolumeSegmentation:
    """The result of :func:`segment_volume`, on the CT's grid.

    Attributes
    ----------
    lesion
        uint8 0/1 lesion mask, the CT's shape and affine.
    classes
        uint8 0/1/2 (ground glass, consolidation) with a class model, else ``None``.
    lung
        The lung labels used to choose the slices (0, 1 right, 2 left).
    slices
        Indices (in display order, inferior to superior) of the axial slices segmented.
    """

    lesion: Volume
    classes: Volume | None
    lung: Volume
    slices: range


def display_transform(affine: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """The nibabel orientation transform taking an array with this ``affine`` to axial slices in
    display orientation (:data:`DISPLAY`: ``array[row, column, slice]``)."""
    from nibabel.orientations import axcodes2ornt, io_orientation, ornt_transform

    return ornt_transform(io_orientation(affine), axcodes2ornt(DISPLAY))


def lung_boxes(
    lungs: npt.NDArray[np.bool_], spacing: list[float]
) -> Callable[[int, npt.NDArray[np.float32]], tuple[slice, slice]]:
    """The field of each axial slice (last axis) of display-oriented ``lungs``: the box of the
    lungs within :data:`FIELD_REACH_MM` of the slice (of the nearest slice with lungs where none
    is that near: the margin slices above and below the lungs), grown by
    :func:`~covseg.model.slices2d.data.field_box`; the body's box in a volume without lungs."""
    reach = int(FIELD_REACH_MM // spacing[2])
    rows = np.asarray(lungs.any(axis=1))  # (row, slice)
    cols = np.asarray(lungs.any(axis=0))  # (column, slice)
    with_lungs = np.flatnonzero(rows.any(axis=0))

    def box(k: int, plane: npt.NDArray[np.float32]) -> tuple[slice, slice]:
        if not len(with_lungs):
            return field_box(plane, None, (spacing[0], spacing[1]))
        near = slice(max(0, k - reach), k + reach + 1)
        if not rows[:, near].any():
            nearest = int(with_lungs[np.argmin(np.abs(with_lungs - k))])
            near = slice(nearest, nearest + 1)
        r, c = np.flatnonzero(rows[:, near].any(axis=1)), np.flatnonzero(cols[:, near].any(axis=1))
        lungs_box = (slice(int(r[0]), int(r[-1]) + 1), slice(int(c[0]), int(c[-1]) + 1))
        return grow_field(lungs_box, plane.shape, (spacing[0], spacing[1]))

    return box


def segment_volume(
    ct: Volume,
    ensemble: Ensemble,
    path: str | Path = "CT",
    lung: Volume | None = None,
    batch: int = BATCH_SLICES,
) -> VolumeSegmentation:
    """Segment the lesions of a CT volume (HU) with a ``slices-2d`` ensemble, slice by slice.

    Parameters
    ----------
    ct
        A 3D CT in HU, any orientation and spacing.
    ensemble
        The model (:func:`~covseg.model.slices2d.predict.load_ensemble`).
    path
        Name used in error messages.
    lung
        Its lung mask when already computed (:func:`covseg.lung.lung_mask`).
    batch
        Slices predicted together.

    Returns
    -------
    VolumeSegmentation
        Lesion (and class) masks with the CT's exact shape and affine.

    Raises
    ------
    ValueError
        When the CT is 2D or not in HU, or holds no lungs; one line naming ``path``.

    Examples
    --------
    >>> ensemble = load_ensemble(Path("models/medseg"))  # doctest: +SKIP
    >>> result = segment_volume(read_volume("chest.nii.gz"), ensemble)  # doctest: +SKIP
    """
    from nibabel.orientations import apply_orientation, axcodes2ornt, io_orientation, ornt_transform

    from covseg.lung import check_hu, lung_mask, thorax_slices

    check_hu(ct, path)
    if lung is None:
        lung = lung_mask(ct, path)
    transform = display_transform(ct.affine)
    hu = apply_orientation(np.asarray(ct.array), transform)  # a view: flips and transposes
    lungs = apply_orientation(np.asarray(lung.array) != 0, transform)
    spacing = [float(ct.spacing[int(np.flatnonzero(transform[:, 0] == j)[0])]) for j in range(3)]
    chosen = thorax_slices(lungs, spacing[2])
    boxes = lung_boxes(lungs, spacing)
    labels = np.zeros(hu.shape, dtype=np.uint8)
    for start in range(chosen.start, chosen.stop, batch):
        ks = range(start, min(start + batch, chosen.stop))
        planes = [np.asarray(hu[:, :, k], dtype=np.float32) for k in ks]
        fields = [boxes(k, plane) for k, plane in zip(ks, planes, strict=True)]
        maps = predict_hu_slices(ensemble, planes, fields, scales="volume_scales")
        for k, box, prob in zip(ks, fields, maps, strict=True):
            # The post-processing's area fraction is of the field, as for a single slice.
            labels[(*box, k)] = label_map(ensemble, prob[(slice(None), *box)])
    labels = keep_lung_lesions(labels, lungs, (spacing[0], spacing[1]))
    undo = ornt_transform(axcodes2ornt(DISPLAY), io_orientation(ct.affine))
    back = np.ascontiguousarray(apply_orientation(labels, undo), dtype=np.uint8)
    return VolumeSegmentation(
        lesion=ct.with_array((back > 0).astype(np.uint8)),
        classes=ct.with_array(back) if ensemble.classes else None,
        lung=lung,
        slices=chosen,
    )
