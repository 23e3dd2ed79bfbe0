"""Realistic synthetic chest CTs with COVID-19-like lesions, from two acquisition sources.

:func:`make_phantom` draws one case: a chest CT in HU (int16) with its lesion mask and a lung
mask, deterministic by seed. :func:`write_dataset` writes many in the COVID-19-20 layout.

Anatomy (HU before noise): air -1000 outside and in the trachea and main bronchi; a carbon
table under the back and, in some patients, the arms beside the chest; subcutaneous fat about
-100; muscle about +45; lungs about -850 (denser at the back, where the patient lies, with a
faint texture and the interlobar fissures), with tapering branching vessels (+40) and airways
(air lumen, soft-tissue wall); a mediastinum of fat (-90) around the heart, aorta, vena cava,
pulmonary arteries and oesophagus (+35 to +45), sometimes with aortic calcification or gas in
the oesophagus; diaphragm, liver (+55), spleen and a stomach with an air-fluid level; ribs,
shoulder blades, clavicles, sternum and spine (cancellous +170 to +300, cortex +700). The two
lungs touch in front of the mediastinum in some patients (anterior junction line); a few have
a pleural effusion (fluid, +12 HU, outside the lung mask) at the back of the lung bases.

Lesions are subpleural, irregular ground-glass opacities (-700 to -380 HU, textured, some with
"crazy paving") and consolidations (-90 to +40 HU), from about 1 mL to about 250 mL each, most
often low, posterior and against the ribs; the lesion mask holds the voxels at least half
lesion. The scan averages over the slice thickness, blurs slightly in-plane, adds Gaussian noise
correlated over about a voxel in-plane, and leaves -1024 outside its circular field of view.

Geometry: the field of view is the same whatever ``size`` (the source's 512 matrix), so in-plane
spacing is ``source spacing * 512 / size``. The affine is the usual one of a supine scan read
from DICOM: voxel axis i runs to the patient's left, j to the back, k to the head, i.e. the
affine is ``diag(-sx, -sy, sz)`` in RAS+ (plus an offset): low i is the patient's *right*.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from covseg.io import Volume, write_mask, write_volume
from covseg.phantom._anatomy import LEFT, RIGHT, Anatomy
from covseg.phantom._grid import Grid, Sampling
from covseg.phantom._lesions import MASK_LEVEL
from covseg.phantom._render import Drawing, draw_chest

__all__ = ["SOURCES", "Phantom", "SourceSpec", "case_name", "make_phantom", "write_dataset"]

#: In-plane size of the reference matrix; other sizes keep its field of view.
FULL_SIZE = 512
#: Height covered by default (mm): the lungs plus a margin above and below.
DEFAULT_COVERAGE_MM = 320.0


@dataclass(frozen=True)
class SourceSpec:
    """How one acquisition source scans.

    Attributes
    ----------
    spacing
        Voxel size at the full 512 matrix (mm).
    noise_sd
        Standard deviation of the image noise (HU).
    offset
        Calibration offset added to every voxel (HU).
    blur_mm
        In-plane Gaussian blur of the reconstruction kernel (sigma, mm).
    """

    spacing: tuple[float, float, float]
    noise_sd: float
    offset: float
    blur_mm: float


#: The two sources of COVID-19-20: "A" thick slices (seen), "B" thin slices (unseen).
SOURCES: dict[str, SourceSpec] = {
    "A": SourceSpec(spacing=(0.74, 0.74, 5.0), noise_sd=22.0, offset=0.0, blur_mm=0.7),
    "B": SourceSpec(spacing=(0.8, 0.8, 1.25), noise_sd=38.0, offset=12.0, blur_mm=0.4),
}


@dataclass
class Phantom:
    """One synthetic case.

    Attributes
    ----------
    ct
        CT in HU (int16).
    lesion
        Lesion mask (uint8 0/1): ground glass and consolidation.
    lung
        Lung mask (uint8): 0 outside, 1 the patient's right lung, 2 the left (lesions included,
        trachea and main bronchi excluded).
    source
        ``"A"`` or ``"B"``.
    """

    ct: Volume
    lesion: Volume
    lung: Volume
    source: str


def make_phantom(
    seed: int = 0,
    source: str = "A",
    size: int = 512,
    n_slices: int | None = None,
    n_lesions: int | None = None,
) -> Phantom:
    """Draw one synthetic chest CT with COVID-19-like lesions.

    Parameters
    ----------
    seed
        Random seed; the same seed and arguments give the same bytes.
    source
        ``"A"`` (about 0.74 x 0.74 x 5 mm) or ``"B"`` (about 0.8 x 0.8 x 1.25 mm).
    size
        In-plane matrix (512 = full resolution); the field of view stays the same.
    n_slices
        Number of axial slices; default: 320 mm of chest at the source's slice spacing.
    n_lesions
        Number of lesions; default: 2 to 9 at random. 0 gives a healthy chest.

    Returns
    -------
    Phantom
        CT (HU, int16), lesion mask and lung mask sharing one geometry.

    Examples
    --------
    >>> case = make_phantom(seed=1, source="A", size=64)
    >>> case.ct.shape
    (64, 64, 64)
    """
    spec = _check(source, size, n_slices, n_lesions)
    rng = np.random.default_rng([seed, ord(source)])
    out = _output_grid(spec, size, n_slices)
    sampling = Sampling.for_output(out)
    anat = Anatomy.sample(rng)
    count = int(rng.integers(2, 10)) if n_lesions is None else n_lesions
    drawing = draw_chest(anat, rng, sampling.working, count, blur_mm=spec.blur_mm)
    affine = _affine(out, rng.uniform(-260.0, -90.0))
    ct = _acquire(rng, sampling, drawing, spec)
    lesion, lung = _masks(sampling, drawing)
    return Phantom(
        ct=Volume(ct, affine),
        lesion=Volume(lesion, affine.copy()),
        lung=Volume(lung, affine.copy()),
        source=source,
    )


def _check(source: str, size: int, n_slices: int | None, n_lesions: int | None) -> SourceSpec:
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}: use one of {', '.join(SOURCES)}")
    if size < 16:
        raise ValueError(f"size must be at least 16 voxels, got {size}")
    if n_slices is not None and n_slices < 1:
        raise ValueError(f"n_slices must be at least 1, got {n_slices}")
    if n_lesions is not None and n_lesions < 0:
        raise ValueError(f"n_lesions must not be negative, got {n_lesions}")
    return SOURCES[source]


def _output_grid(spec: SourceSpec, size: int, n_slices: int | None) -> Grid:
    scale = FULL_SIZE / size
    sx, sy, sz = spec.spacing
    nz = n_slices if n_slices is not None else int(round(DEFAULT_COVERAGE_MM / sz))
    return Grid((size, size, nz), (sx * scale, sy * scale, sz))


def _affine(grid: Grid, z_centre: float) -> npt.NDArray[np.float64]:
    """Voxel -> RAS+ mm: i to the patient's left (-x), j to the back (-y), k up (+z)."""
    sx, sy, sz = grid.spacing
    nx, ny, nz = grid.shape
    affine = np.diag([-sx, -sy, sz, 1.0])
    # Patient coordinates u = -x, v = -y are centred on the volume; z is the table position.
    affine[:3, 3] = [sx * (nx - 1) / 2, sy * (ny - 1) / 2, z_centre - sz * (nz - 1) / 2]
    return affine


def _acquire(
    rng: np.random.Generator, sampling: Sampling, drawing: Drawing, spec: SourceSpec
) -> npt.NDArray[np.int16]:
    """Scan the drawing: slice averaging, upsampling, offset, correlated noise, int16 HU."""
    hu = sampling.to_output(drawing.hu)
    # CT noise is correlated over about a voxel in-plane: white noise through a [1 2 1]/4 filter
    # along i and j, whose s.d. is 6/16 of the input's.
    noise = _binomial(_binomial(rng.standard_normal(hu.shape, dtype=np.float32), 0), 1)
    hu += noise * np.float32(spec.noise_sd / 0.375) + np.float32(spec.offset)
    nu, nv, _ = hu.shape
    i = (np.arange(nu) - (nu - 1) / 2)[:, None] / (nu / 2)
    j = (np.arange(nv) - (nv - 1) / 2)[None, :] / (nv / 2)
    hu[i**2 + j**2 > 1.0] = -1024.0  # outside the scanner's circular reconstruction field
    return np.clip(np.rint(hu), -1024, 3071).astype(np.int16)


def _binomial(a: npt.NDArray[np.float32], axis: int) -> npt.NDArray[np.float32]:
    """``a`` filtered with [1 2 1]/4 along ``axis`` (edges repeated)."""
    a = np.moveaxis(a, axis, 0)
    out = 0.5 * a
    out[1:] += 0.25 * a[:-1]
    out[:-1] += 0.25 * a[1:]
    out[0] += 0.25 * a[0]
    out[-1] += 0.25 * a[-1]
    return np.moveaxis(out, 0, axis)


def _masks(
    sampling: Sampling, drawing: Drawing
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8]]:
    """Lesion (0/1) and lung (0/1/2) masks on the output grid: voxels at least half inside."""
    # +1 right, -1 left: one resampling serves both disjoint lungs.
    side = sampling.to_output_sparse(drawing.right.astype(np.float32) - drawing.left)
    lung = ((side >= 0.5) * RIGHT + (side <= -0.5) * LEFT).astype(np.uint8)
    lesion = (sampling.to_output_sparse(drawing.lesion) >= MASK_LEVEL) & (lung > 0)
    return lesion.astype(np.uint8), lung


def case_name(source: str, number: int) -> str:
    """COVID-19-20 case id, e.g. ``volume-covid19-A-0003``."""
    return f"volume-covid19-{source}-{number:04d}"


def write_dataset(
    out_dir: Path,
    *,
    n_train: int,
    n_validation: int,
    n_test_seen: int,
    n_test_unseen: int,
    size: int = 128,
    seed: int = 0,
    progress: bool = False,
) -> list[Path]:
    """Write a synthetic dataset in the COVID-19-20 layout.

    ``Train/`` and ``Validation/`` hold source-A cases, ``Test/`` the seen (A) then the unseen (B)
    cases, each as ``<case>_ct.nii.gz`` and ``<case>_seg.nii.gz``; lung masks go to
    ``lungs/<case>_lung.nii.gz``. Case numbers are unique across the dataset.

    Returns
    -------
    list[Path]
        The CT files written, in order.
    """
    plan = (
        [("Train", "A")] * n_train
        + [("Validation", "A")] * n_validation
        + [("Test", "A")] * n_test_seen
        + [("Test", "B")] * n_test_unseen
    )
    if any(n < 0 for n in (n_train, n_validation, n_test_seen, n_test_unseen)):
        raise ValueError("case counts must not be negative")
    written = []
    for number, (split, source) in enumerate(_progress(plan, progress)):
        case_seed = int(np.random.SeedSequence([seed, number]).generate_state(1)[0])
        case = make_phantom(case_seed, source, size)
        name = case_name(source, number)
        written.append(write_volume(case.ct, out_dir / split / f"{name}_ct.nii.gz"))
        write_mask(case.lesion.array, case.ct, out_dir / split / f"{name}_seg.nii.gz")
        write_mask(case.lung.array, case.ct, out_dir / "lungs" / f"{name}_lung.nii.gz")
    return written


def _progress(plan: list[tuple[str, str]], show: bool) -> Iterable[tuple[str, str]]:
    if not show:
        return plan
    from rich.progress import track

    return track(plan, description="phantoms")
