"""Lung mask from a CT in HU, without a learned model, and a generous thorax region.

The mask labels 0 outside the lungs, 1 the patient's right lung and 2 the patient's left lung,
whatever the orientation the file declares. It is meant for quantification (lung volume, "% of
lung involved"), so lesions inside the lung (ground glass, and consolidation up to soft-tissue
HU) should be part of it. For choosing what to segment (the lung crop of ``covseg predict`` and
of training, and the outside-lung post-processing) use :func:`thorax_mask` instead: a lesion the
lung mask misses must never be cropped or post-processed away.

How it works (all on a copy reoriented to RAS+ and averaged to about 2.5 mm in-plane, which makes
a 512 x 512 x 300 CT take a few seconds):

1. Air below :data:`AIR_HU` (block-averaged, so partial-volume lung edges count).
2. Air components that are nearly pure air (median below :data:`GAS_MEDIAN_HU`, or a fifth of
   it below :data:`PURE_AIR_HU`: the air around the patient, bowel and stomach gas, the trachea
   when separate) are not lung, unless they cover :data:`LUNG_SHARE` of the body's cross-section
   in some slice (lung shown too dark: emphysema, an 8-bit lung window mapped back to HU; bowel
   gas never covers that much). Ventilated lung has a median near -850 HU because of its vessels
   and interstitium. This works on crops inside the body too, where the lungs reach the edge of
   the image and no "outside" is visible.
3. The trachea and main bronchi: the pure-air tube connected to the lungs near the midline at
   the top is removed (grown at :data:`PURE_AIR_HU`, tightened when it leaks into the lungs).
4. Right and left: two large components are the two lungs; one large component (lungs touching
   at the anterior junction) is eroded until it splits and each voxel then goes to the nearer
   part. The side comes from the affine: in RAS+ world coordinates +x points to the patient's
   right, so the lung with the larger x is the right lung.
5. Each lung grows into the hazy tissue next to it (:data:`AIR_HU` to :data:`SOLID_HU`: dense
   ground glass, denser than the air threshold), at most :data:`HAZE_MM` from its aerated part;
   the hazy tissue is first opened in-plane, so that the one-voxel rind where lung meets the
   chest wall or the diaphragm (partial volume) is not taken.
6. Each lung is closed with a ball of :data:`CLOSING_MM` (a radius in mm, so thick and thin
   slices behave alike) and its holes are filled slice by slice: this brings back vessels and
   dense lesions (consolidation), also those against the chest wall or filling the base of a
   lung, without reaching bone or contrast-filled vessels outside the lung.
7. Dense lung the aerated lung wraps around: in each axial slice, the tissue (from
   :data:`AIR_HU` up to :data:`MAX_FILL_HU`) inside the convex hull of each lung,
   inside the body, off the airways and outside the mediastinum (in each row, the pixels between
   the two lungs' medial edges) is added where it is diseased lung rather than solid tissue: a
   connected region of it is added when at least :data:`MIXED_SHARE` of it lies below
   :data:`SOLID_HU` (ground glass, air bronchograms). Liver, spleen, heart, effusion and muscle
   are uniformly denser (the liver and spleen the hull wraps at NY-SBU's lung bases: 5-14 %; the
   MedSeg lesions it adds: 16-82 %). In a volume, also only where the same pixel is lung in the
   slices above and below: at the bases the hull wraps the liver and spleen under the dome of
   the diaphragm (on TotalSegmentator's lung bases the unrestricted hull dropped the Dice from
   0.96 to 0.58, and to 0.947 with the share rule alone). A one-slice input has no slice above
   or below and gets the share rule only.
8. The low-resolution mask is upsampled with linear interpolation of the lung field (smooth
   edges) and nearest labels, then put back in the file's orientation.

Measured (``benchmarks/bench_lung_coverage.py``, ``benchmarks/RESULTS.md``): on the 50 MedSeg
training slices mapped back to HU with the slices-2d window (-1100..300 HU, 0.7 mm pixels),
83.5 % of the radiologists' lesion pixels lie inside the mask (72.8 % before the dark-lung rule
of step 2 and steps 5 and 7), 88.2 % on the 31 slices whose window is near the fitted one; one
slice (54, a window so narrow that aerated lung maps to about -300 HU) has no lungs. lungmask's
two DICOM slices: 0.995 and 0.966 of R231's right and left voxel counts. TotalSegmentator's lung
bases: Dice 0.961 against its lobes, as before.

Limits:

- Dense lung the aerated lung does not wrap around is left out: consolidation filling the
  posterior part of a lung (dependent, the commonest COVID-19 pattern), the cap between the
  hull's chord and the chest wall, a whole lobe or lung consolidated. In a volume the hull step
  is also restricted as above. Quantification adds the lesion voxels the lung mask misses to
  their lung (:mod:`covseg.quantify`), so involvement stays consistent, but a lung volume without
  a lesion mask is then too small; NY-SBU ``A046441/19010101-23`` (extensive bilateral
  consolidation) gets 5.8 mL of lung in its one slice (4.1 mL before).
- Uniformly solid consolidation (no ground glass or air bronchograms left) is not told from
  effusion, liver or heart, and is left out with them; the mediastinum is told by position only
  in rows where both lungs are aerated. Effusion is not recognised by its position.
- Severe emphysema with most of the lung below -950 HU, and lungs shown brighter than about
  -350 HU (a narrow 8-bit window mapped back to HU) are not found.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt

from covseg.io import Volume

#: Block-averaged HU below which a voxel is air-filled (ventilated lung, airways, outside air).
AIR_HU = -350.0
#: A connected air region whose median is below this is pure air (outside, bowel, airway), not lung.
PURE_AIR_HU = -950.0
#: An air region whose median (block-averaged) is below this is gas (outside, bowel), not lung.
GAS_MEDIAN_HU = -900.0
#: So is an air region with this fraction of pure air (below :data:`PURE_AIR_HU`): bowel and
#: stomach gas with fluid or stool around it. Ventilated lung has almost none at 2.5 mm.
GAS_PURE_FRACTION = 0.2
#: Radius (mm) of the closing that brings back lesions and vessels at the lung border.
CLOSING_MM = 12.0
#: Voxels denser than this (HU, bone and contrast) are never added by the closing.
MAX_FILL_HU = 150.0
#: Target in-plane voxel size (mm) of the working copy.
WORK_MM = 2.5
#: Smallest lung component kept (mL); smaller air pockets are noise or bowel.
MIN_LUNG_ML = 0.5
#: Without an air region of at least this volume (mL) there are no lungs in the field of view.
MIN_LARGEST_ML = 3.0
#: Dense tissue the hull adds is lung only in regions with this share below :data:`SOLID_HU`.
MIXED_SHARE = 0.2
#: HU below which a pixel is not solid tissue (ground glass, air; fat is about -100 HU).
SOLID_HU = -150.0
#: Farthest (mm) hazy tissue is added from aerated lung.
HAZE_MM = 20.0
#: Margin (mm) above and below the lungs of :func:`thorax_mask`.
THORAX_MARGIN_MM = 20.0
#: An air region covering at least this share of the body's cross-section in one axial slice is
#: lung even when it looks like pure gas (bowel and stomach gas stay well below it).
LUNG_SHARE = 0.12

FloatArray = npt.NDArray[np.float32]
BoolArray = npt.NDArray[np.bool_]


def check_hu(ct: Volume, path: str | Path = "CT") -> None:
    """Raise a clear ``ValueError`` when ``ct`` is not a 3D CT in Hounsfield units.

    A CT in HU has air near -1000 HU and soft tissue near 0..+100 HU. Data already scaled to
    0..1, or stored values whose rescale slope/intercept were not applied (no values below
    -200, usually 0..4095), are detected from the intensity range.

    Raises
    ------
    ValueError
        With a one-line message that names ``path``.
    """
    if ct.array.ndim != 3:
        raise ValueError(f"{path}: a {ct.array.ndim}D image, a 3D CT volume is needed")
    if ct.array.size == 0:
        raise ValueError(f"{path}: empty image")
    lo, hi = float(ct.array.min()), float(ct.array.max())
    if hi - lo <= 2.0:
        raise ValueError(
            f"{path}: intensities span {lo:g}..{hi:g}, the CT looks scaled (e.g. to 0..1), "
            "not in HU; give the CT in Hounsfield units"
        )
    if lo > -200.0:
        raise ValueError(
            f"{path}: no values below -200 HU (range {lo:g}..{hi:g}), so no air: the CT is not "
            "in HU (rescale slope/intercept missing?)"
        )


def lung_mask(ct: Volume, path: str | Path = "CT") -> Volume:
    """Label the lungs of a CT in HU: 0 outside, 1 the patient's right lung, 2 the left lung.

    Parameters
    ----------
    ct
        A 3D CT in HU, any orientation and spacing (thick 5 mm or thin slices).
    path
        Name used in error messages.

    Returns
    -------
    Volume
        uint8 labels with the CT's geometry; lesions inside the lungs are included.

    Raises
    ------
    ValueError
        When the CT is not in HU, not 3D, or has no lungs in the field of view.

    Examples
    --------
    >>> lungs = lung_mask(read_volume("volume-covid19-A-0003_ct.nii.gz"))  # doctest: +SKIP
    >>> lungs.array.max()  # doctest: +SKIP
    2
    """
    from nibabel.orientations import apply_orientation, io_orientation

    check_hu(ct, path)
    # Work in RAS+ order (first index toward the patient's right, then anterior, superior).
    ornt = io_orientation(ct.affine)
    ras = apply_orientation(np.asarray(ct.array), ornt)  # a view: flips and transposes
    spacing = np.asarray(ct.spacing)[np.argsort(ornt[:, 0])]
    factors = _block_factors(spacing)
    low = _block_mean(ras, factors)
    work_spacing = spacing * np.asarray(factors)
    labels = _lung_labels(low, work_spacing, path)
    full = _upsample(labels, factors, ras.shape)
    back = apply_orientation(full, _inverse(ornt))
    return ct.with_array(np.ascontiguousarray(back, dtype=np.uint8))


def thorax_mask(
    ct: Volume,
    lung: Volume | None = None,
    path: str | Path = "CT",
    margin_mm: float = THORAX_MARGIN_MM,
) -> Volume:
    """A generous region around the lungs for choosing what to segment: the thorax, not the lung.

    The patient's body (all of the image on a crop inside the body) in the axial slices that
    hold lung, plus ``margin_mm`` above and below. Dense lung the lung mask misses (a whole
    consolidated lobe, a lung the 8-bit window turned white) lies inside it, so a lesion is never
    lost by cropping or post-processing with it.

    Parameters
    ----------
    ct
        A 3D CT in HU.
    lung
        Its lung mask, when already computed (:func:`lung_mask`).
    path
        Name used in error messages.
    margin_mm
        Margin added above and below the lungs (mm).

    Returns
    -------
    Volume
        uint8 0/1 with the CT's geometry.

    Raises
    ------
    ValueError
        As :func:`lung_mask` (no lungs, not HU, not 3D).
    """
    from nibabel.orientations import apply_orientation, io_orientation

    if lung is None:
        lung = lung_mask(ct, path)
    ornt = io_orientation(ct.affine)
    ras = apply_orientation(np.asarray(ct.array), ornt)
    lungs = apply_orientation(np.asarray(lung.array) != 0, ornt)
    spacing = np.asarray(ct.spacing)[np.argsort(ornt[:, 0])]
    factors = _block_factors(spacing)
    body = _body(_block_mean(ras, factors)).astype(np.uint8)
    full = _upsample(body, factors, ras.shape) > 0
    kept = thorax_slices(lungs, float(spacing[2]), margin_mm)
    full[:, :, : kept.start] = False
    full[:, :, kept.stop :] = False
    back = apply_orientation(full | lungs, _inverse(ornt))
    return ct.with_array(np.ascontiguousarray(back, dtype=np.uint8))


def thorax_slices(
    lungs: npt.NDArray[np.bool_], slice_mm: float, margin_mm: float = THORAX_MARGIN_MM
) -> range:
    """The axial slices (last axis) that hold lung, plus ``margin_mm`` above and below.

    ``slice_mm`` is the spacing along the last axis (mm); ``lungs`` must hold some lung.
    """
    zs = np.flatnonzero(lungs.any(axis=(0, 1)))
    pad = int(np.ceil(margin_mm / slice_mm))
    return range(max(0, int(zs[0]) - pad), min(lungs.shape[2], int(zs[-1]) + 1 + pad))


def lung_bounding_box(
    mask: npt.ArrayLike, spacing: tuple[float, ...], margin_mm: float = 10.0
) -> tuple[slice, ...]:
    """Index slices of the box around the lungs, grown by ``margin_mm`` on each side.

    Parameters
    ----------
    mask
        Lung mask (any nonzero value is lung).
    spacing
        Voxel size in mm along each array axis.
    margin_mm
        Margin added on each side (mm), clipped to the array.

    Returns
    -------
    tuple of slice
        One slice per axis; ``array[box]`` is the crop.

    Raises
    ------
    ValueError
        When the mask is empty.
    """
    arr = np.asarray(mask) != 0
    if not arr.any():
        raise ValueError("empty lung mask: no bounding box")
    box = []
    for axis in range(arr.ndim):
        other = tuple(a for a in range(arr.ndim) if a != axis)
        hit = np.flatnonzero(arr.any(axis=other))
        pad = int(np.ceil(margin_mm / spacing[axis]))
        box.append(slice(max(0, hit[0] - pad), min(arr.shape[axis], hit[-1] + 1 + pad)))
    return tuple(box)


def _inverse(ornt: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """The orientation transform that undoes ``ornt`` (as given by ``io_orientation``)."""
    from nibabel.orientations import ornt_transform

    identity = np.column_stack([np.arange(len(ornt)), np.ones(len(ornt))])
    return ornt_transform(identity, ornt)


def _block_factors(spacing: npt.NDArray[np.float64]) -> tuple[int, int, int]:
    """Integer averaging factors that bring each axis to about :data:`WORK_MM`."""
    return tuple(max(1, int(WORK_MM // s)) for s in spacing)  # type: ignore[return-value]


def _block_mean(array: npt.NDArray[np.generic], factors: tuple[int, int, int]) -> FloatArray:
    """Mean over blocks of ``factors`` voxels (edges padded by repetition)."""
    a = np.asarray(array)
    pads = [(0, (-n) % f) for n, f in zip(a.shape, factors, strict=True)]
    if any(p[1] for p in pads):
        a = np.pad(a, pads, mode="edge")
    out = a.astype(np.float32, copy=False)
    for axis, f in enumerate(factors):
        if f > 1:
            shape = out.shape[:axis] + (out.shape[axis] // f, f) + out.shape[axis + 1 :]
            out = out.reshape(shape).mean(axis=axis + 1, dtype=np.float32)
    return np.asarray(out, dtype=np.float32)


def _lung_labels(low: FloatArray, spacing: npt.NDArray[np.float64], path: str | Path):
    """Labels 1 (right lung) and 2 (left lung) at working resolution."""
    from scipy import ndimage

    voxel_ml = float(np.prod(spacing)) / 1000.0
    air = low < AIR_HU
    comp, n = ndimage.label(air)
    if n == 0:
        raise ValueError(f"{path}: no lungs in the field of view (no air inside the body)")
    idx = np.arange(1, n + 1)
    sizes = ndimage.sum_labels(air, comp, idx) * voxel_ml
    big = idx[sizes >= MIN_LUNG_ML]
    medians = np.atleast_1d(ndimage.median(low, comp, big)) if len(big) else np.zeros(0)
    pure = ndimage.sum_labels(low < PURE_AIR_HU, comp, big) / (sizes[big - 1] / voxel_ml)
    gas = (medians < GAS_MEDIAN_HU) | (pure >= GAS_PURE_FRACTION)
    body = _body(low)
    # Lung shown too dark (an 8-bit lung window mapped back to HU, emphysema) is still lung when
    # it fills much of the body's cross-section; bowel and stomach gas never do.
    gas &= _slice_share(comp, big, body) < LUNG_SHARE
    keep = big[~gas & _inside_body(body, comp, big)]
    if not len(keep) or sizes[keep - 1].max() < MIN_LARGEST_ML:
        raise ValueError(f"{path}: no lungs in the field of view (no aerated lung found)")
    lungs = _near_large(comp, keep, sizes, spacing)
    airway = _airway(low, lungs, spacing)
    lungs &= ~airway
    two = _split_lungs(lungs, low, spacing)
    if two is None:
        raise ValueError(f"{path}: no lungs in the field of view (only airways)")
    two = _grow_hazy(two, low, airway, body, spacing)
    closed = _close_lungs(two, low, airway, spacing)
    return _fill_cavity(closed, low, airway, body)


def _grow_hazy(
    labels: npt.NDArray[np.uint8],
    low: FloatArray,
    airway: BoolArray,
    body: BoolArray,
    spacing: npt.NDArray[np.float64],
) -> npt.NDArray[np.uint8]:
    """Each lung grown into the hazy tissue next to it (:data:`AIR_HU` to :data:`SOLID_HU`:
    dense ground glass), at most :data:`HAZE_MM` from its aerated part."""
    from scipy import ndimage

    lungs = labels > 0
    hazy = (low >= AIR_HU) & (low < SOLID_HU) & body & ~airway
    # Opened in-plane: the one-voxel rind where lung meets wall or diaphragm (partial volume) goes.
    hazy = ndimage.binary_opening(hazy, ndimage.generate_binary_structure(2, 1)[:, :, None])
    box = lung_bounding_box(lungs, tuple(spacing), HAZE_MM)
    near, index = ndimage.distance_transform_edt(~lungs[box], spacing, return_indices=True)
    comp, _ = ndimage.label(hazy[box] | lungs[box])
    touching = np.unique(comp[lungs[box]])
    grow = hazy[box] & (near <= HAZE_MM) & np.isin(comp, touching[touching > 0])
    out = labels.copy()
    out[box][grow] = labels[box][tuple(i[grow] for i in index)]
    return out


def _body(low: FloatArray) -> BoolArray:
    """The patient's body: the largest tissue region with its holes filled slice by slice.

    When no outside air is visible (less than 30 % of the in-plane image border is pure air: a
    crop inside the body, or a slice cropped to the body), the whole image is body.
    """
    from scipy import ndimage

    edge = np.zeros(low.shape[:2], bool)
    edge[[0, -1], :] = edge[:, [0, -1]] = True
    if np.mean(low[edge] < PURE_AIR_HU) < 0.3:
        return np.ones(low.shape, bool)
    tissue = low > AIR_HU
    tcomp, n = ndimage.label(tissue)
    if n == 0:
        return np.ones(low.shape, bool)
    sizes = ndimage.sum_labels(tissue, tcomp, np.arange(1, n + 1))
    return _fill_slices(tcomp == int(np.argmax(sizes)) + 1)


def _inside_body(
    body: BoolArray, comp: npt.NDArray[np.int32], labels: npt.NDArray[np.intp]
) -> npt.NDArray[np.bool_]:
    """For each air component in ``labels``: does most of it lie inside the ``body``?

    A component mostly outside it (the air around the patient, the table, blankets) is not lung.
    """
    from scipy import ndimage

    within = ndimage.sum_labels(body, comp, labels)
    total = ndimage.sum_labels(np.ones_like(body), comp, labels)
    return np.asarray(within >= 0.5 * total)


def _slice_share(
    comp: npt.NDArray[np.int32], labels: npt.NDArray[np.intp], body: BoolArray
) -> npt.NDArray[np.float64]:
    """For each component in ``labels``: its largest share of the body's area in one slice."""
    if not len(labels):
        return np.zeros(0)
    body_area = np.maximum(body.sum(axis=(0, 1)), 1)
    share = np.zeros(len(labels))
    for k in range(comp.shape[2]):
        counts = np.bincount(comp[:, :, k].ravel(), minlength=int(labels.max()) + 1)
        share = np.maximum(share, counts[labels] / body_area[k])
    return share


def _near_large(
    comp: npt.NDArray[np.int32],
    keep: npt.NDArray[np.intp],
    sizes: npt.NDArray[np.float64],
    spacing: npt.NDArray[np.float64],
) -> BoolArray:
    """The kept components, without small ones (< 5 % of the largest) > 10 mm from a large one.

    Lung fragments (apices, bases, lung split by dense lesions) lie next to the main lung;
    pockets of gas in the bowel lie under the diaphragm, further away.
    """
    from scipy import ndimage

    largest = sizes[keep - 1].max()
    large = keep[sizes[keep - 1] >= 0.05 * largest]
    small = keep[sizes[keep - 1] < 0.05 * largest]
    mask = np.isin(comp, large)
    if len(small):
        far = (ndimage.distance_transform_edt(~mask, spacing) > 10.0).astype(np.uint8)
        all_far = np.atleast_1d(ndimage.minimum(far, comp, small))
        mask |= np.isin(comp, small[all_far == 0])
    return mask


def _airway(low: FloatArray, lungs: BoolArray, spacing: npt.NDArray[np.float64]) -> BoolArray:
    """Trachea and main bronchi: the pure-air tube reaching highest near the lungs' midline.

    Of the pure-air components in the lungs' region that reach the upper 40 % of the lungs near
    the middle in x, the highest is the airway tree. A tree larger than an airway tree can be
    (it leaked into emphysematous or noisy lung) is found again with a stricter threshold, and
    dropped when it still leaks.
    """
    from scipy import ndimage

    voxel_ml = float(np.prod(spacing)) / 1000.0
    xs = np.flatnonzero(lungs.any(axis=(1, 2)))
    zs = np.flatnonzero(lungs.any(axis=(0, 1)))
    mid, width = (xs[0] + xs[-1]) / 2.0, xs[-1] - xs[0] + 1
    z_top = zs[-1] - max(1, int(0.4 * len(zs)))
    for threshold in (PURE_AIR_HU, -975.0, -990.0):
        strict = (low < threshold) & lungs
        comp, n = ndimage.label(strict)
        if n == 0:
            break
        best, best_top = 0, -1
        for k, sl in enumerate(ndimage.find_objects(comp), start=1):
            if sl is None or sl[2].stop - 1 < z_top:
                continue
            centre = (sl[0].start + sl[0].stop - 1) / 2.0
            if abs(centre - mid) > 0.2 * width:
                continue
            if sl[2].stop > best_top:
                best, best_top = k, sl[2].stop
        if best == 0:
            break
        tree = comp == best
        # An airway tree down to the lobar bronchi holds well under 150 mL of air.
        if tree.sum() * voxel_ml <= 150.0:
            return np.asarray(ndimage.binary_dilation(tree), dtype=bool)
    return np.zeros_like(lungs)


def _midline(low: FloatArray, lungs: BoolArray) -> tuple[float, bool]:
    """First-axis index of the patient's mid-sagittal plane in the working copy, and whether it
    comes from the body.

    The median x of the body (tissue denser than :data:`AIR_HU`, largest component) when the body
    lies inside the image; on a crop inside the body, the middle of the lungs' extent (a guess).
    """
    from scipy import ndimage

    tissue = low > AIR_HU
    comp, n = ndimage.label(tissue)
    if n:
        sizes = ndimage.sum_labels(tissue, comp, np.arange(1, n + 1))
        body = comp == int(np.argmax(sizes)) + 1
        profile = body.sum(axis=(1, 2))
        if profile[0] == 0 and profile[-1] == 0:
            cdf = np.cumsum(profile)
            return float(np.searchsorted(cdf, cdf[-1] / 2.0)), True
    xs = np.flatnonzero(lungs.any(axis=(1, 2)))
    return (xs[0] + xs[-1]) / 2.0, False


def _split_lungs(
    lungs: BoolArray, low: FloatArray, spacing: npt.NDArray[np.float64]
) -> npt.NDArray[np.uint8] | None:
    """Label 1 the patient's right lung and 2 the left, separating them where they touch.

    In the RAS+ working copy the first index grows toward the patient's right (+x). Each air
    component goes to the side of the midline where it lies; a component with much of its volume
    on both sides (lungs touching at the anterior junction) is eroded apart and grown back.
    """
    from scipy import ndimage

    comp, n = ndimage.label(lungs)
    if n == 0:
        return None
    mid, from_body = _midline(low, lungs)
    x = np.arange(lungs.shape[0], dtype=np.float64)
    index = np.arange(1, n + 1)
    total = ndimage.sum_labels(lungs, comp, index)
    right = ndimage.sum_labels(lungs & (x > mid)[:, None, None], comp, index)
    side = np.where(right >= total / 2.0, 1, 2).astype(np.uint8)
    markers = np.zeros(lungs.shape, np.uint8)
    markers[lungs] = side[comp[lungs] - 1]
    for k in index[(right >= 0.2 * total) & (right <= 0.8 * total)]:
        region = comp == k
        markers[region] = _erode_apart(region, spacing, mid, from_body)[region]
    return markers


def _erode_apart(
    region: BoolArray, spacing: npt.NDArray[np.float64], mid: float, from_body: bool
) -> npt.NDArray[np.uint8]:
    """Labels 1 (right) and 2 (left) for an air region that spans the midline.

    The region is eroded in-plane until it splits into two large parts on either side of the
    midline; each voxel then goes to the nearer part. When it never splits, it is cut at the
    body's midline (lungs fused over a long stretch); on a crop, whose midline is only a guess,
    it is one lung, on the side of its centre.
    """
    from scipy import ndimage

    step = np.zeros((3, 3, 1), bool)
    step[1, :, 0] = step[:, 1, 0] = True
    x = np.arange(region.shape[0], dtype=np.float64)
    eroded = region.copy()
    total = region.sum()
    for _ in range(int(np.ceil(20.0 / min(spacing[:2])))):
        eroded = ndimage.binary_erosion(eroded, step)
        comp, n = ndimage.label(eroded)
        if n >= 2:
            sizes = ndimage.sum_labels(eroded, comp, np.arange(1, n + 1))
            order = np.argsort(sizes)[::-1][:2]
            centres = ndimage.center_of_mass(eroded, comp, order + 1)
            sides = [c[0] > mid for c in centres]
            if sizes[order[1]] >= 0.1 * sizes[order[0]] and sides[0] != sides[1]:
                markers = np.zeros(region.shape, np.uint8)
                for k, is_right in zip(order, sides, strict=True):
                    markers[comp == k + 1] = 1 if is_right else 2
                _, near = ndimage.distance_transform_edt(markers == 0, spacing, return_indices=True)
                return np.where(region, markers[tuple(near)], 0).astype(np.uint8)
        if eroded.sum() < 0.05 * total:
            break
    if from_body:
        return np.where(region, np.where((x > mid)[:, None, None], 1, 2), 0).astype(np.uint8)
    centre = float((x[:, None, None] * region).sum() / total)
    return (region * (1 if centre > mid else 2)).astype(np.uint8)


def _close_lungs(
    labels: npt.NDArray[np.uint8],
    low: FloatArray,
    airway: BoolArray,
    spacing: npt.NDArray[np.float64],
) -> npt.NDArray[np.uint8]:
    """Close each lung with a ball of :data:`CLOSING_MM` mm and fill its holes slice by slice."""
    from scipy import ndimage

    out = labels.copy()
    allowed = (low < MAX_FILL_HU) & ~airway
    for value in (1, 2):
        lung = labels == value
        if not lung.any():
            continue
        box = lung_bounding_box(lung, tuple(spacing), CLOSING_MM + 2 * max(spacing))
        sub = lung[box]
        # Closing by distance: dilate by r then erode by r (exact disks in mm, any spacing).
        outside = ndimage.distance_transform_edt(~sub, _ball(spacing)) > CLOSING_MM
        closed = ~outside
        closed = ndimage.distance_transform_edt(closed, _ball(spacing)) > CLOSING_MM
        # The closing may not reach bone, contrast or airways; holes enclosed by lung are lung.
        closed = (closed & allowed[box] & (out[box] == 0)) | sub
        closed = _fill_slices(closed) & ~airway[box]
        out[box][closed & (out[box] == 0)] = value
    return out


def _fill_cavity(
    labels: npt.NDArray[np.uint8], low: FloatArray, airway: BoolArray, body: BoolArray
) -> npt.NDArray[np.uint8]:
    """Add the dense lung each lung's aerated part leaves out, slice by slice.

    In each axial slice, a lung's convex hull is what its pleura would enclose if the lung were
    aerated: consolidation against the chest wall or filling a lower lobe lies inside it. Of the
    hull, only tissue inside the body (:data:`AIR_HU` up to :data:`MAX_FILL_HU`: not gas, bone
    or contrast), off the airways, outside the mediastinum (:func:`_mediastinum`), in regions that
    look like diseased lung (:func:`_mixed_regions`) and, in a volume, with lung in the slices
    above and below is added.
    """
    from skimage.morphology import convex_hull_image

    out = labels.copy()
    fillable = (low >= AIR_HU) & (low < MAX_FILL_HU) & body & ~airway
    top = labels.shape[2] - 1
    for k in range(top + 1):
        plane = labels[:, :, k]
        if not plane.any():
            continue
        free = fillable[:, :, k] & (plane == 0) & ~_mediastinum(plane)
        if top > 0:
            # In a volume, the hull of a lung base wraps the liver or spleen under the dome of
            # the diaphragm, as dense as consolidation: only tissue with lung both above and
            # below it is added (the first and last slices get nothing).
            free &= (labels[:, :, min(k + 1, top)] > 0) & (labels[:, :, max(k - 1, 0)] > 0)
            free &= 0 < k < top
        for value in (1, 2):
            lung = plane == value
            if lung.sum() < 3:
                continue
            box = lung_bounding_box(lung, (1.0, 1.0), 0.0)  # the hull lies inside it
            if not free[box].any():
                continue
            add = convex_hull_image(lung[box]) & free[box]
            add = _mixed_regions(add, low[:, :, k][box])
            out[:, :, k][box][add] = value
            free[box] &= ~add
    return out


def _mixed_regions(add: BoolArray, low: FloatArray) -> BoolArray:
    """The connected regions of ``add`` (2D) of which at least :data:`MIXED_SHARE` is below
    :data:`SOLID_HU`: diseased lung (ground glass, air bronchograms, partial consolidation).

    Liver, spleen, effusion, heart and muscle are uniformly denser; on the NY-SBU lung bases the
    hull's liver and spleen held 5-14 % such pixels, the MedSeg lesions the hull adds 16-82 %.
    """
    from scipy import ndimage

    comp, n = ndimage.label(add)
    if n == 0:
        return add
    index = np.arange(1, n + 1)
    share = ndimage.mean(low < SOLID_HU, comp, index)
    keep = np.zeros(n + 1, bool)
    keep[1:] = np.asarray(share) >= MIXED_SHARE
    return keep[comp]


def _mediastinum(plane: npt.NDArray[np.uint8]) -> BoolArray:
    """Pixels of an axial slice lying between the two lungs along the patient's left-right axis.

    In each row (fixed anterior-posterior position) where both lungs are present, the pixels
    between the right lung's most medial pixel and the left lung's are mediastinum (heart, great
    vessels, oesophagus, spine). Rows holding one lung have none.
    """
    n = plane.shape[0]
    right, left = plane == 1, plane == 2
    x = np.arange(n)[:, None]
    right_min = np.where(right.any(axis=0), right.argmax(axis=0), n)
    left_max = np.where(left.any(axis=0), n - 1 - left[::-1].argmax(axis=0), -1)
    return np.asarray((x > left_max[None, :]) & (x < right_min[None, :]))


def _ball(spacing: npt.NDArray[np.float64]) -> tuple[float, float, float]:
    """Voxel size (mm) for the closing's distance maps: a ball, the same in mm for any slices."""
    return (float(spacing[0]), float(spacing[1]), float(spacing[2]))


def _fill_slices(mask: BoolArray) -> BoolArray:
    """Fill holes in each axial (last-axis) slice."""
    from scipy import ndimage

    out = np.empty_like(mask)
    for k in range(mask.shape[2]):
        out[:, :, k] = ndimage.binary_fill_holes(mask[:, :, k])
    return out


def _upsample(
    labels: npt.NDArray[np.uint8], factors: tuple[int, int, int], shape: tuple[int, ...]
) -> npt.NDArray[np.uint8]:
    """Back to full resolution: linear lung field for smooth edges, nearest label for the side."""
    from scipy import ndimage

    out = np.zeros(shape, np.uint8)
    if not labels.any():
        return out
    box = lung_bounding_box(labels, (1.0, 1.0, 1.0), 1.0)
    sub = labels[box]
    field = (sub > 0).astype(np.float32)
    # Voxel centres: full index i sits at (i + 0.5) / f - 0.5 in working coordinates.
    start = [b.start * f for b, f in zip(box, factors, strict=True)]
    stop = [min(b.stop * f, n) for b, f, n in zip(box, factors, shape, strict=True)]
    grids = [
        (np.arange(a, b, dtype=np.float32) + 0.5) / f - 0.5 - s.start
        for a, b, f, s in zip(start, stop, factors, box, strict=True)
    ]
    lung = _separable_linear(field, grids) >= 0.5
    nearest = [
        np.clip(np.rint(g).astype(np.intp), 0, n - 1) for g, n in zip(grids, sub.shape, strict=True)
    ]
    # Voxels of the smoothed field just beyond a lung take the nearer lung's label.
    _, idx = ndimage.distance_transform_edt(sub == 0, return_indices=True)
    side = sub[tuple(idx)][np.ix_(*nearest)]
    region = tuple(slice(a, b) for a, b in zip(start, stop, strict=True))
    out[region] = np.where(lung, side, 0)
    return out


def _separable_linear(field: FloatArray, grids: list[FloatArray]) -> FloatArray:
    """Linear interpolation of ``field`` at the coordinates ``grids`` (one per axis)."""
    out = field
    for axis, g in enumerate(grids):
        n = out.shape[axis]
        g = np.clip(g, 0, n - 1)
        lo = np.floor(g).astype(np.intp)
        hi = np.minimum(lo + 1, n - 1)
        w = (g - lo).astype(np.float32)
        shape = [1] * out.ndim
        shape[axis] = len(g)
        w = w.reshape(shape)
        out = np.take(out, lo, axis=axis) * (1 - w) + np.take(out, hi, axis=axis) * w
    return out
