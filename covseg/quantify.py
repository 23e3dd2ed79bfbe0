"""Lesion burden of one CT scan: volumes, lung involvement, severity, and an overlay picture.

Conventions (part of the ``covseg quantify`` interface):

- Volumes are in mL (1 mL = 1000 mm^3), from the voxel volume of the CT's affine.
- Left and right are the patient's, from the lung mask (:mod:`covseg.lung`), whatever the image
  orientation.
- The lungs are the lung mask plus the lesion: a lesion voxel that the lung mask misses (dense
  consolidation against the chest wall) belongs to the lung of its lesion's other voxels, or
  else to the lung nearest to it in x, so "% involved" never exceeds 100 %.
- Lesions are the connected components of the mask (26-connectivity, 3D).
- Ground glass versus consolidation: a lesion voxel of at least :data:`CONSOLIDATION_HU`
  (-200 HU) is consolidation, below it ground glass. Ground-glass opacity is a hazy increase
  that leaves vessels visible (about -700 to -300 HU); consolidation hides them and is near soft
  tissue (about -100 to +50 HU); -200 HU lies between the two.
- Severity per lung from the percentage involved, the usual CT severity bands: 0 none, 1 under
  5 %, 2 5-25 %, 3 26-50 %, 4 51-75 %, 5 over 75 %.
- Without a lesion mask (``lesion=None``) the lungs alone are measured: the lung volumes are
  given and every lesion key (:data:`LESION_KEYS`) is ``None`` (``null`` in the JSON, with
  :data:`LUNGS_ONLY_NOTE` as its ``note``).
- A lesion mask is 0/1 (or boolean); a multi-label file (TotalSegmentator's 42 organs, a class
  map) is refused by :func:`lesion_from_labels` unless one label is picked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from covseg.io import Volume

#: Lesion voxels at or above this (HU) are consolidation, below it ground glass.
CONSOLIDATION_HU = -200.0
#: Upper bounds (%, inclusive) of severity grades 1 to 4; above the last one is grade 5.
SEVERITY_BANDS = (5.0, 25.0, 50.0, 75.0)
#: Scans with fewer axial slices than this get no coronal view in the overlay.
MIN_CORONAL_SLICES = 8
#: The keys of :func:`quantify`'s result, in order.
KEYS = (
    "lesion_ml",
    "lung_ml",
    "left_lung_ml",
    "right_lung_ml",
    "involvement_pct",
    "left_involvement_pct",
    "right_involvement_pct",
    "lesion_count",
    "largest_lesion_ml",
    "ggo_ml",
    "consolidation_ml",
    "left_severity",
    "right_severity",
)
#: The keys that need a lesion mask: ``None`` when the lungs alone are measured.
LESION_KEYS = tuple(k for k in KEYS if k not in ("lung_ml", "left_lung_ml", "right_lung_ml"))
#: The ``note`` of a record without a lesion mask.
LUNGS_ONLY_NOTE = (
    "no lesion mask or model given: the lungs alone were measured, the lesion keys are null"
)

Record = dict[str, float | int | None]


def severity(percent: float) -> int:
    """CT severity grade 0-5 of one lung from its percentage involved.

    Examples
    --------
    >>> [severity(p) for p in (0.0, 3.0, 5.0, 20.0, 26.0, 60.0, 80.0)]
    [0, 1, 1, 2, 3, 4, 5]
    """
    if percent <= 0.0:
        return 0
    if percent < SEVERITY_BANDS[0]:
        return 1
    return 2 + int(np.searchsorted(SEVERITY_BANDS[1:], percent, side="left"))


def lesion_from_labels(
    array: npt.ArrayLike, path: str | Path = "lesion mask", label: int | None = None
) -> npt.NDArray[np.bool_]:
    """The lesion of a mask file: its 0/1 values, or ``array == label`` when a label is picked.

    Raises
    ------
    ValueError
        When the mask holds values other than 0 and 1 and no ``label`` is given, naming the
        labels found (a multi-label segmentation is not a lesion mask), or NaN.
    """
    values = np.asarray(array)
    if values.dtype.kind == "f" and np.isnan(values).any():
        raise ValueError(f"{path}: the mask contains NaN")
    if label is not None:
        return np.asarray(values == label)
    if values.dtype == np.bool_:
        return values
    found = np.unique(values)
    if not np.isin(found, (0, 1)).all():
        shown = ", ".join(f"{v:g}" for v in found[:12]) + (", ..." if len(found) > 12 else "")
        raise ValueError(
            f"{path}: not a 0/1 lesion mask ({len(found)} labels found: {shown}); "
            "pick the lesion label with --label N"
        )
    return values != 0


def quantify(
    ct: Volume,
    lesion: npt.ArrayLike | Volume | None,
    lung: Volume | None = None,
    classes: npt.ArrayLike | None = None,
) -> Record:
    """Lesion burden of a CT: the JSON record of ``covseg quantify``.

    Parameters
    ----------
    ct
        CT in HU.
    lesion
        Lesion mask (nonzero = lesion) with the CT's shape, as an array or a Volume; ``None``
        measures the lungs alone (the lesion keys are then ``None``).
    lung
        Lung labels (1 right, 2 left) with the CT's geometry; computed with
        :func:`covseg.lung.lung_mask` when not given.
    classes
        A model's lesion classes (1 ground glass, 2 consolidation) with the CT's shape: they
        give ``ggo_ml`` and ``consolidation_ml`` (a lesion voxel of class 2 is consolidation,
        any other ground glass); without them a lesion voxel of at least
        :data:`CONSOLIDATION_HU` is consolidation (:func:`split_method` names which was used).

    Returns
    -------
    dict
        The keys of :data:`KEYS`: volumes in mL, percentages in %, counts and grades as int
        (``None`` for :data:`LESION_KEYS` without a lesion mask).

    Raises
    ------
    ValueError
        When the mask's shape differs from the CT's, or the CT has no lungs or is not in HU.

    Examples
    --------
    >>> burden = quantify(ct, prediction)  # doctest: +SKIP
    >>> burden["involvement_pct"], burden["left_severity"]  # doctest: +SKIP
    (12.4, 2)
    """
    from covseg.lung import lung_mask

    if lesion is None:
        lungs_only = True
        mask = np.zeros(ct.shape, bool)
    else:
        lungs_only = False
        mask = np.asarray(lesion.array if isinstance(lesion, Volume) else lesion) != 0
    if mask.shape != ct.shape:
        raise ValueError(f"lesion mask shape {mask.shape} differs from the CT's {ct.shape}")
    if lung is None:
        lung = lung_mask(ct)
    elif lung.shape != ct.shape:
        raise ValueError(f"lung mask shape {lung.shape} differs from the CT's {ct.shape}")
    voxel_ml = ct.voxel_volume_ml
    lungs = np.asarray(lung.array)
    # Work on the lesion voxels only: a full-size CT has ~80 million voxels, lesions far fewer.
    coords, components, count = lesion_components(mask)
    sides = _lesion_sides(lungs, coords, components, count, ct.affine)
    hu = np.asarray(ct.array)[tuple(coords.T)]
    sizes = np.bincount(components, minlength=count + 1)[1:] * voxel_ml
    under = lungs[tuple(coords.T)]  # the lung mask's label at each lesion voxel
    # Lung volumes: the lung mask plus the lesion voxels it missed, on the side they went to.
    right_lung = ((lungs == 1).sum() + ((sides == 1) & (under != 1)).sum()) * voxel_ml
    left_lung = ((lungs == 2).sum() + ((sides == 2) & (under != 2)).sum()) * voxel_ml
    right_lesion = (sides == 1).sum() * voxel_ml
    left_lesion = (sides == 2).sum() * voxel_ml
    lesion_ml = float(len(coords) * voxel_ml)
    lung_ml = float(right_lung + left_lung)
    left_pct, right_pct = _percent(left_lesion, left_lung), _percent(right_lesion, right_lung)
    if classes is None:
        dense = hu >= CONSOLIDATION_HU
    else:
        kinds = np.asarray(classes)
        if kinds.shape != ct.shape:
            raise ValueError(f"lesion classes shape {kinds.shape} differs from the CT's {ct.shape}")
        dense = kinds[tuple(coords.T)] == 2
    record: Record = {
        "lesion_ml": lesion_ml,
        "lung_ml": lung_ml,
        "left_lung_ml": float(left_lung),
        "right_lung_ml": float(right_lung),
        "involvement_pct": _percent(lesion_ml, lung_ml),
        "left_involvement_pct": left_pct,
        "right_involvement_pct": right_pct,
        "lesion_count": int(count),
        "largest_lesion_ml": float(sizes.max()) if count else 0.0,
        "ggo_ml": float((~dense).sum() * voxel_ml),
        "consolidation_ml": float(dense.sum() * voxel_ml),
        "left_severity": severity(left_pct),
        "right_severity": severity(right_pct),
    }
    if lungs_only:
        record.update(dict.fromkeys(LESION_KEYS))
    return record


def split_method(classes: object | None) -> str:
    """How :func:`quantify` told ground glass from consolidation: the JSON's ``ggo_split``."""
    if classes is not None:
        return "model classes (1 ground glass, 2 consolidation)"
    return f"HU threshold: consolidation at {CONSOLIDATION_HU:g} HU and above"


def lesion_components(
    mask: npt.NDArray[np.bool_],
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.int32], int]:
    """Lesion voxels and their connected component (26-connectivity).

    Returns
    -------
    tuple
        ``(coords, components, count)``: voxel indices (N x 3), the component (1..count) of each
        voxel, and the number of components.
    """
    from scipy import ndimage

    if not mask.any():
        return np.zeros((0, mask.ndim), np.intp), np.zeros(0, np.int32), 0
    box = tuple(
        slice(int(h[0]), int(h[-1]) + 1)
        for h in (np.flatnonzero(mask.any(axis=other)) for other in _other_axes(mask.ndim))
    )
    labels, count = ndimage.label(mask[box], np.ones((3,) * mask.ndim, bool))
    local = np.nonzero(labels)
    coords = np.stack([c + b.start for c, b in zip(local, box, strict=True)], axis=1)
    return coords, labels[local].astype(np.int32), int(count)


def _other_axes(ndim: int) -> list[tuple[int, ...]]:
    return [tuple(a for a in range(ndim) if a != axis) for axis in range(ndim)]


def _percent(part: float, whole: float) -> float:
    """``part`` as a percentage of ``whole`` (0 when ``whole`` is 0)."""
    return float(100.0 * part / whole) if whole > 0 else 0.0


def _lesion_sides(
    lungs: npt.NDArray[Any],
    coords: npt.NDArray[np.intp],
    components: npt.NDArray[np.int32],
    count: int,
    affine: npt.NDArray[np.float64],
) -> npt.NDArray[np.uint8]:
    """The lung (1 right, 2 left) of every lesion voxel.

    A voxel inside the lung mask takes its lung. A voxel outside it goes to the lung that holds
    most of its lesion's other voxels, or, when the lesion touches no lung, to the lung whose
    centre is nearest in world x.
    """
    inside = lungs[tuple(coords.T)]
    if count == 0:
        return np.zeros(0, np.uint8)
    in_right = np.bincount(components, weights=inside == 1, minlength=count + 1)
    in_left = np.bincount(components, weights=inside == 2, minlength=count + 1)
    n = np.maximum(np.bincount(components, minlength=count + 1), 1)
    world_x = coords @ affine[0, :3] + affine[0, 3]
    lesion_x = np.bincount(components, weights=world_x, minlength=count + 1) / n
    right_x, left_x = (_world_x(lungs == v, affine) for v in (1, 2))
    nearer_right = np.abs(lesion_x - right_x) <= np.abs(lesion_x - left_x)
    choice = np.where(
        in_right + in_left > 0, np.where(in_right >= in_left, 1, 2), np.where(nearer_right, 1, 2)
    ).astype(np.uint8)
    return np.where((inside == 1) | (inside == 2), inside, choice[components]).astype(np.uint8)


def _world_x(mask: npt.NDArray[np.bool_], affine: npt.NDArray[np.float64]) -> float:
    """World x (RAS+ mm) of the centre of ``mask`` (every 4th voxel: enough for a centre);
    infinite when empty, so that it is never the nearest."""
    coarse = np.argwhere(mask[::4, ::4, ::4]) * 4
    if len(coarse) == 0:
        return float("inf")
    return float(affine[0, :3] @ coarse.mean(axis=0) + affine[0, 3])


def write_overlay(
    ct: Volume,
    lesion: npt.ArrayLike,
    lung: Volume,
    path: str | Path,
    title: str = "",
) -> Path:
    """Axial and coronal slices through the largest lesion with lung and lesion outlines.

    Shown in the radiological convention (patient's right on the image's left, anterior and
    superior up) in a lung window (W 1500, L -600 HU), with the pixel aspect ratio from the
    spacing. Without a lesion, the slices go through the centre of the lungs. A scan of fewer
    than :data:`MIN_CORONAL_SLICES` slices gets the axial view only.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from nibabel.orientations import apply_orientation, io_orientation

    ornt = io_orientation(ct.affine)
    image = apply_orientation(np.asarray(ct.array), ornt)
    les = apply_orientation(np.asarray(lesion) != 0, ornt)
    lungs = apply_orientation(np.asarray(lung.array), ornt)
    spacing = [ct.spacing[int(a)] for a in ornt[:, 0].argsort()]
    i, j, k = _focus(les, lungs)
    # RAS+ array (x right, y anterior, z superior) -> rows top-down, patient's right on the left.
    views = [
        ("axial", lambda a: a[:, :, k].T[::-1, ::-1], spacing[1] / spacing[0]),
        ("coronal", lambda a: a[:, j, :].T[::-1, ::-1], spacing[2] / spacing[0]),
    ]
    if image.shape[2] < MIN_CORONAL_SLICES:
        views = views[:1]  # a few slices (2D DICOM) make no coronal picture
    fig, axes = plt.subplots(1, len(views), figsize=(6 * len(views), 6.5), facecolor="black")
    for ax, (name, cut, aspect) in zip(np.atleast_1d(axes), views, strict=True):
        ax.imshow(cut(image), cmap="gray", vmin=-1350, vmax=150, aspect=aspect)
        for value, colour in ((1, "#4da6ff"), (2, "#4dffa6")):
            outline = cut(lungs) == value
            if outline.any():
                ax.contour(outline, levels=[0.5], colors=colour, linewidths=0.8)
        if cut(les).any():
            ax.contour(cut(les), levels=[0.5], colors="#ff3030", linewidths=1.0)
        ax.set_title(name, color="white")
        ax.text(0.01, 0.5, "R", color="yellow", transform=ax.transAxes, va="center")
        ax.text(0.98, 0.5, "L", color="yellow", transform=ax.transAxes, va="center")
        ax.axis("off")
    legend = "blue: right lung, green: left lung, red: lesion"
    fig.suptitle(f"{title}\n{legend}" if title else legend, color="white", fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, facecolor="black")
    plt.close(fig)
    return path


def _focus(lesion: npt.NDArray[np.bool_], lungs: npt.NDArray[Any]) -> tuple[int, int, int]:
    """Voxel at the centre of the largest lesion, else of the lungs, else of the image.

    The centre of a curved lesion may fall outside it: the lesion voxel nearest the centre is
    taken. The lungs' centre is taken as it is (between the lungs in x: both are cut).
    """
    if lesion.any():
        coords, components, _ = lesion_components(lesion)
        voxels = coords[components == np.argmax(np.bincount(components))]
        best = voxels[np.argmin(((voxels - voxels.mean(axis=0)) ** 2).sum(axis=1))]
        return int(best[0]), int(best[1]), int(best[2])
    if np.any(lungs):
        centre = np.argwhere(np.asarray(lungs)[::2, ::2, ::2] > 0).mean(axis=0) * 2
        return int(centre[0]), int(centre[1]), int(centre[2])
    i, j, k = (n // 2 for n in lesion.shape)
    return i, j, k
