"""Read and write medical volumes without losing their geometry.

A :class:`Volume` is an array plus the affine that places each voxel in the world (RAS+, mm, the
NIfTI/nibabel convention). The array keeps the file's voxel index order (i, j, k); volumes read
with SimpleITK (NRRD, MHA, DICOM files and series), whose arrays come as (k, j, i), are transposed
to match, and their LPS geometry is converted to RAS+.

2D slices (PNG, JPG) have no spacing: they are read as grayscale 2D volumes in the image's own
order (axis 0 = row from the top, axis 1 = column from the left, as PIL and numpy give them) with
an identity affine, so one "mm" is one pixel. Colour images become 8-bit luminance; palette images
keep their indices (label maps). 2D masks are written as 8-bit PNG with values 0/255.
"""

from __future__ import annotations

import gzip
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

#: File suffixes read with nibabel.
NIFTI_SUFFIXES = (".nii.gz", ".nii")
#: File suffixes read with SimpleITK (``.dcm``: one DICOM slice; a folder: one DICOM series).
ITK_SUFFIXES = (".nrrd", ".nhdr", ".mha", ".mhd", ".dcm")
#: 2D image suffixes read with Pillow (grayscale, no spacing).
SLICE_SUFFIXES = (".png", ".jpg", ".jpeg")
#: Every file suffix :func:`read_volume` knows.
IMAGE_SUFFIXES = NIFTI_SUFFIXES + ITK_SUFFIXES + SLICE_SUFFIXES
#: RAS+ <-> LPS: flip the first two world axes.
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])
#: Two grids are the same when voxel positions and spacings agree to this many mm (NIfTI's
#: float32 affine keeps about 1e-4 mm at 1 m from the origin)...
GRID_ATOL_MM = 1e-3
#: ... and their axis directions (unit vectors) to this, component by component.
GRID_DIRECTION_ATOL = 1e-4


class VolumeReadError(ValueError):
    """A file that is not a readable image volume (message names the file and the problem)."""


class GridMismatchError(ValueError):
    """Two images that do not cover the same voxels (message: what differs and by how much)."""


@dataclass(eq=False)
class Volume:
    """An image or mask with its geometry.

    Parameters
    ----------
    array
        Voxel values in the file's index order (i, j, k). CT in HU, masks as uint8/bool. 2D
        PNG/JPG slices: (row, column), as PIL and numpy give them.
    affine
        4 x 4 matrix mapping voxel indices (i, j, k, 1) to RAS+ world coordinates in mm; the
        identity for 2D slices, which have no spacing (one "mm" is one pixel).

    Examples
    --------
    >>> v = Volume(np.zeros((4, 4, 2)), np.diag([0.7, 0.7, 5.0, 1.0]))
    >>> v.spacing
    (0.7, 0.7, 5.0)
    """

    array: npt.NDArray[np.generic]
    affine: npt.NDArray[np.float64] = field(default_factory=lambda: np.eye(4))

    def __post_init__(self) -> None:
        self.affine = np.asarray(self.affine, dtype=np.float64)
        if self.affine.shape != (4, 4):
            raise ValueError(f"affine must be 4 x 4, got {self.affine.shape}")

    @classmethod
    def from_geometry(
        cls,
        array: npt.NDArray[np.generic],
        spacing: tuple[float, ...],
        origin: tuple[float, ...] = (0.0, 0.0, 0.0),
        direction: npt.ArrayLike | None = None,
    ) -> Volume:
        """Build a volume from spacing (mm), origin (RAS+ mm) and direction cosines (columns)."""
        spacing3 = tuple(spacing) + (1.0,) * (3 - len(spacing))
        rot = np.eye(3) if direction is None else np.asarray(direction, dtype=np.float64)
        affine = np.eye(4)
        affine[:3, :3] = rot @ np.diag(spacing3)
        affine[:3, 3] = origin
        return cls(array, affine)

    @property
    def shape(self) -> tuple[int, ...]:
        """Array shape in voxels."""
        return tuple(self.array.shape)

    @property
    def spacing(self) -> tuple[float, ...]:
        """Voxel size in mm along each array axis."""
        sp = np.sqrt((self.affine[:3, :3] ** 2).sum(axis=0))
        return tuple(float(s) for s in sp[: self.array.ndim])

    @property
    def origin(self) -> tuple[float, float, float]:
        """World position (RAS+, mm) of the centre of voxel (0, 0, 0)."""
        return tuple(float(x) for x in self.affine[:3, 3])  # type: ignore[return-value]

    @property
    def direction(self) -> npt.NDArray[np.float64]:
        """3 x 3 direction cosines: column a is the RAS+ unit vector of array axis a."""
        return self.affine[:3, :3] / np.sqrt((self.affine[:3, :3] ** 2).sum(axis=0))

    @property
    def voxel_volume_ml(self) -> float:
        """Volume of one voxel in mL (1 mL = 1000 mm^3)."""
        return float(abs(np.linalg.det(self.affine[:3, :3]))) / 1000.0

    def with_array(self, array: npt.NDArray[np.generic]) -> Volume:
        """A volume with the same geometry and another array of the same shape."""
        if array.shape != self.array.shape:
            raise ValueError(f"shape {array.shape} differs from {self.array.shape}")
        return Volume(array, self.affine.copy())

    def same_geometry(self, other: Volume, atol_mm: float = 1e-3) -> bool:
        """True when shape and affine agree (to ``atol_mm``) with ``other``."""
        return self.shape == other.shape and bool(
            np.allclose(self.affine, other.affine, atol=atol_mm)
        )


def axis_codes(affine: npt.ArrayLike, ndim: int = 3) -> str:
    """The world direction each array axis grows towards, one letter an axis (``"LPS"``).

    R/L, A/P, S/I as in RAS+ (the axis's largest world component decides; oblique axes get the
    closest letter), as nibabel's ``aff2axcodes`` writes them.
    """
    columns = np.asarray(affine, dtype=np.float64)[:3, :ndim]
    codes = ""
    for column in columns.T:
        world = int(np.argmax(np.abs(column)))
        codes += ("RAS" if column[world] > 0 else "LPI")[world]
    return codes


def to_reference_grid(
    volume: Volume,
    reference: Volume,
    *,
    path: str | Path | None = None,
    reference_name: str = "the reference",
    atol_mm: float = GRID_ATOL_MM,
    direction_atol: float = GRID_DIRECTION_ATOL,
) -> Volume:
    """``volume`` on ``reference``'s voxel grid, its axes swapped and flipped exactly as needed.

    Two images of one scan often store the same voxels in another axis order or direction: a
    DICOM series read as LPS and a TotalSegmentator mask of it written as LAS, a viewer that
    saved RAS. When the two grids coincide up to such a reordering (each axis of ``volume``
    parallel or anti-parallel to one of ``reference``'s, the same voxel count and spacing along
    it, the same world position of every voxel centre; within ``atol_mm`` and
    ``direction_atol``), the array is transposed and flipped (no interpolation, every value
    kept) and given ``reference``'s affine. Anything else (another shape, spacing, origin or a
    rotation) is refused, naming the axis and the difference.

    Parameters
    ----------
    volume
        The image to bring onto the grid (typically a mask from another tool).
    reference
        The image whose grid is kept (the CT, the truth).
    path
        ``volume``'s file, named first in an error message.
    reference_name
        How an error message names ``reference`` (``"the truth"``, ``"the CT"``).
    atol_mm, direction_atol
        Tolerances on positions and spacings (mm) and on direction cosines (unitless).

    Returns
    -------
    Volume
        ``volume`` itself when already on the grid, else a reoriented copy with
        ``reference.affine``.

    Raises
    ------
    GridMismatchError
        When the grids differ by more than axis order and flips.

    Examples
    --------
    >>> ct = Volume(np.zeros((4, 3, 2)), np.diag([-0.8, -0.8, 2.0, 1.0]))  # LPS
    >>> mask = Volume(np.zeros((4, 3, 2)), ct.affine @ np.array(
    ...     [[1, 0, 0, 0], [0, -1, 0, 2], [0, 0, 1, 0], [0, 0, 0, 1]]))  # the j axis flipped: LAS
    >>> axis_codes(mask.affine)
    'LAS'
    >>> to_reference_grid(mask, ct).affine.tolist() == ct.affine.tolist()
    True
    """
    prefix = f"{path}: " if path is not None else ""
    ref = reference_name
    n = volume.array.ndim
    if reference.array.ndim != n:
        raise GridMismatchError(
            f"{prefix}{n}D image of shape {volume.shape}, {ref} is {reference.array.ndim}D "
            f"of shape {reference.shape}"
        )
    if n > 3:  # 4D (time series): no reorientation, the same grid or nothing
        if volume.same_geometry(reference, atol_mm):
            return volume
        raise GridMismatchError(
            f"{prefix}{n}D grid (shape {volume.shape}) differs from {ref}'s ({reference.shape})"
        )
    columns = volume.affine[:3, :n]
    ref_columns = reference.affine[:3, :n]
    spacing = np.linalg.norm(columns, axis=0)
    ref_spacing = np.linalg.norm(ref_columns, axis=0)
    cosines = (ref_columns / ref_spacing).T @ (columns / spacing)  # [reference axis, our axis]
    # order[b]: our axis lying along the reference's axis b; sign: same (+1) or opposite (-1).
    order = np.argsort(np.argmax(np.abs(cosines), axis=0))
    sign = np.sign(cosines[np.arange(n), order])
    if sorted(np.argmax(np.abs(cosines), axis=0).tolist()) != list(range(n)):
        order = np.arange(n)  # no one-to-one pairing: a rotation, reported below
        sign = np.ones(n)
    new_columns = columns[:, order] * sign
    shape = tuple(volume.shape[a] for a in order)
    flipped = [b for b in range(n) if sign[b] < 0]
    origin = np.asarray(volume.origin) + sum(
        (columns[:, order[b]] * (shape[b] - 1) for b in flipped), np.zeros(3)
    )
    codes, ref_codes = axis_codes(volume.affine, n), axis_codes(reference.affine, n)
    reoriented = f" after reorienting {codes} to {ref_codes}" if codes != ref_codes else ""

    def axis(b: int) -> str:  # 2D slices' identity affines make world letters meaningless
        return f"axis {b} ({ref_codes[b]})" if n == 3 else f"axis {b}"

    directions = new_columns / spacing[order]
    ref_directions = ref_columns / ref_spacing
    if not np.allclose(directions, ref_directions, rtol=0, atol=direction_atol):
        angle = np.degrees(np.arccos(np.clip(np.sum(directions * ref_directions, axis=0), -1, 1)))
        raise GridMismatchError(
            f"{prefix}axes rotated against {ref}'s by up to {angle.max():.3g} degrees (axis "
            f"codes {codes} vs {ref_codes}); only swapped or flipped axes are undone exactly: "
            f"resample onto {ref}'s grid"
        )
    for b in range(n):
        if shape[b] != reference.shape[b]:
            raise GridMismatchError(
                f"{prefix}{shape[b]} voxels along {axis(b)}, {ref} has "
                f"{reference.shape[b]} (shape {shape}{reoriented} vs {reference.shape})"
            )
    for b in range(n):
        ours, theirs = float(spacing[order[b]]), float(ref_spacing[b])
        if abs(ours - theirs) > atol_mm:
            raise GridMismatchError(
                f"{prefix}spacing {ours:.6g} mm along {axis(b)}, {ref} has "
                f"{theirs:.6g} mm (differs by {abs(ours - theirs):.3g} mm{reoriented})"
            )
    offset = origin - np.asarray(reference.origin)
    if float(np.max(np.abs(offset))) > atol_mm:
        voxels = np.linalg.lstsq(ref_columns, offset, rcond=None)[0]
        worst = int(np.argmax(np.abs(voxels)))
        raise GridMismatchError(
            f"{prefix}grid shifted by {np.linalg.norm(offset):.3g} mm from {ref}'s (origin "
            f"{_fmt(origin)} vs {_fmt(reference.origin)} mm{reoriented}; "
            f"{voxels[worst]:+.3g} voxels along {axis(worst)})"
        )
    if not flipped and list(order) == list(range(n)):
        return volume
    array = np.transpose(volume.array, order)
    array = np.ascontiguousarray(np.flip(array, axis=tuple(flipped)) if flipped else array)
    return Volume(array, reference.affine.copy())


def _fmt(values: npt.ArrayLike) -> str:
    return "(" + ", ".join(f"{v:.6g}" for v in np.asarray(values, dtype=float)) + ")"


def image_suffix(path: str | Path) -> str:
    """The lower-case image suffix of ``path`` (``".nii.gz"`` is one), else its last suffix."""
    name = Path(path).name.lower()
    for suffix in IMAGE_SUFFIXES:
        if name.endswith(suffix):
            return suffix
    return Path(name).suffix


def is_image_file(path: str | Path) -> bool:
    """True when ``path`` has a suffix :func:`read_volume` reads (the content is not checked)."""
    return image_suffix(path) in IMAGE_SUFFIXES


def _describe(exc: BaseException) -> str:
    """One line saying what is wrong (SimpleITK's messages span several lines)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    itk = [line for line in lines if line.startswith("sitk::ERROR:")]
    text = itk[0].removeprefix("sitk::ERROR:").strip() if itk else (lines or ["no details"])[0]
    if isinstance(exc, EOFError):
        return f"truncated file ({text[:200]})"
    if isinstance(exc, zlib.error | gzip.BadGzipFile):
        return f"corrupt compressed data ({text[:200]})"
    return f"{exc.__class__.__name__}: {text[:200]}"


def has_spacing(path: str | Path) -> bool:
    """False for PNG/JPG slices, whose "mm" are pixels; True for formats that store a spacing."""
    return image_suffix(path) not in SLICE_SUFFIXES


def read_volume(path: str | Path, series: str | None = None) -> Volume:
    """Read a NIfTI, NRRD/MHA, DICOM or PNG/JPG file, or a folder holding one DICOM series.

    A folder holding several series needs ``series``, the Series Instance UID of the one to read
    (:func:`dicom_series` lists them).

    Raises
    ------
    VolumeReadError
        When the path is missing, empty, not an image, corrupt or truncated; the one-line message
        names the file.

    Examples
    --------
    >>> ct = read_volume("volume-covid19-A-0003_ct.nii.gz")  # doctest: +SKIP
    >>> ct.spacing  # doctest: +SKIP
    (0.74, 0.74, 5.0)
    """
    path = Path(path)
    if not path.exists():
        raise VolumeReadError(f"{path}: no such file or folder")
    if path.is_file() and path.stat().st_size == 0:
        raise VolumeReadError(f"{path}: empty file")
    try:
        if path.is_dir():
            return _read_dicom_series(path, series)
        suffix = image_suffix(path)
        if suffix in NIFTI_SUFFIXES:
            return _read_nifti(path)
        if suffix in SLICE_SUFFIXES:
            return _read_slice(path)
        return _read_itk(path)
    except VolumeReadError:
        raise
    except Exception as exc:  # nibabel/SimpleITK/zlib/PIL raise many types for broken files
        raise VolumeReadError(f"{path}: cannot read image, {_describe(exc)}") from exc


def _read_nifti(path: Path) -> Volume:
    import nibabel as nib

    img = nib.load(str(path))
    array = np.asanyarray(img.dataobj)  # type: ignore[attr-defined]
    affine = img.affine  # type: ignore[attr-defined]
    if affine is None:
        raise VolumeReadError(f"{path}: no affine in header")
    return Volume(np.asarray(array), np.asarray(affine, dtype=np.float64))


def _read_slice(path: Path) -> Volume:
    from PIL import Image

    with Image.open(path) as img:
        # Grayscale keeps its values; a palette image keeps its indices (label maps such as
        # MedSeg's classes/ are stored that way); colour and 1-bit images become 8-bit luminance.
        gray = img if img.mode in ("L", "P", "I;16", "I", "F") else img.convert("L")
        array = np.asarray(gray)
    return Volume(np.ascontiguousarray(array), np.eye(4))


def _sitk() -> Any:
    """SimpleITK, with ITK's own warnings off: they are several lines of C++ source paths on
    stderr ("No Series were found" for any folder without DICOM files), and every problem they
    point at is reported by covseg itself in one line (no series, uneven slice gaps)."""
    import SimpleITK as sitk

    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    return sitk


def _itk_to_volume(image: object) -> Volume:
    sitk = _sitk()

    assert isinstance(image, sitk.Image)
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise ValueError(f"{image.GetNumberOfComponentsPerPixel()} components a voxel, expected 1")
    array = sitk.GetArrayFromImage(image)  # (k, j, i)
    array = np.ascontiguousarray(array.transpose(tuple(range(array.ndim))[::-1]))
    dim = image.GetDimension()
    direction = np.eye(3)
    direction[:dim, :dim] = np.asarray(image.GetDirection(), dtype=np.float64).reshape(dim, dim)
    spacing = np.ones(3)
    spacing[:dim] = image.GetSpacing()
    origin = np.zeros(3)
    origin[:dim] = image.GetOrigin()
    affine = np.eye(4)
    affine[:3, :3] = _LPS_TO_RAS @ direction @ np.diag(spacing)
    affine[:3, 3] = _LPS_TO_RAS @ origin
    return Volume(array, affine)


def _read_itk(path: Path) -> Volume:
    sitk = _sitk()

    return _itk_to_volume(sitk.ReadImage(str(path)))


def dicom_series(folder: str | Path) -> dict[str, list[str]]:
    """The DICOM series directly in ``folder``: Series Instance UID -> its files, in the slice
    order GDCM sorts them (by position along the slice normal), the order of a volume's slices."""
    sitk = _sitk()

    reader = sitk.ImageSeriesReader()
    return {
        uid: list(reader.GetGDCMSeriesFileNames(str(folder), uid))
        for uid in reader.GetGDCMSeriesIDs(str(folder))
    }


def pick_series(folder: str | Path, series: str | None = None) -> tuple[str, list[str]]:
    """(UID, files) of the one DICOM series in ``folder``, or of ``series`` when it holds several.

    Raises
    ------
    VolumeReadError
        When there is no series, ``series`` is not there, or there are several and none is
        picked; the message names the folder and each series (UID and file count).
    """
    found = dicom_series(folder)
    listed = ", ".join(f"{uid} ({len(files)} files)" for uid, files in found.items())
    if not found:
        raise VolumeReadError(f"{folder}: no DICOM series found")
    if series is not None:
        if series not in found:
            raise VolumeReadError(f"{folder}: no DICOM series {series} (found: {listed})")
        return series, found[series]
    if len(found) > 1:
        raise VolumeReadError(
            f"{folder}: {len(found)} DICOM series ({listed}); pick one with --series UID"
        )
    uid, files = next(iter(found.items()))
    return uid, files


def _read_dicom_series(folder: Path, series: str | None = None) -> Volume:
    sitk = _sitk()

    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(pick_series(folder, series)[1])
    reader.MetaDataDictionaryArrayUpdateOn()
    # GDCM applies HU = stored * RescaleSlope + RescaleIntercept and sorts slices by position.
    image = reader.Execute()
    _check_slice_gaps(reader, image.GetDepth(), folder)
    return _itk_to_volume(image)


def _check_slice_gaps(reader: object, depth: int, folder: Path) -> None:
    """Refuse a series with missing or unevenly spaced slices.

    ITK then reports one mean spacing (a warning only), which would silently stretch the volume
    and every measurement in mm. Positions are ImagePositionPatient projected on the slice normal.
    """
    sitk = _sitk()

    assert isinstance(reader, sitk.ImageSeriesReader)
    if depth < 3 or not reader.HasMetaDataKey(0, "0020|0037"):
        return
    cosines = [float(x) for x in reader.GetMetaData(0, "0020|0037").split("\\")]
    normal = np.cross(cosines[:3], cosines[3:6])
    positions = []
    for index in range(depth):
        if not reader.HasMetaDataKey(index, "0020|0032"):
            return
        position = [float(x) for x in reader.GetMetaData(index, "0020|0032").split("\\")]
        positions.append(float(np.dot(normal, position)))
    gaps = np.abs(np.diff(positions))
    typical = float(np.median(gaps))
    if float(np.max(np.abs(gaps - typical))) > max(1e-2, 0.01 * typical):
        raise VolumeReadError(
            f"{folder}: slices unevenly spaced (gaps from {gaps.min():.3g} to {gaps.max():.3g} mm);"
            " missing slices?"
        )


def write_volume(volume: Volume, path: str | Path) -> Path:
    """Write a volume, keeping its geometry.

    NIfTI (``.nii``/``.nii.gz``) stores the affine as float32, so geometry survives to float32
    precision (about 1e-5 mm at 200 mm from the origin); NRRD/MHA keep float64. ``.png`` writes a
    2D uint8/uint16 image (no geometry). Boolean arrays are written as uint8.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = image_suffix(path)
    if suffix in NIFTI_SUFFIXES:
        _write_nifti(volume, path)
    elif suffix in ITK_SUFFIXES and suffix != ".dcm":
        _write_itk(volume, path)
    elif suffix == ".png":
        _write_png(volume.array, path)
    else:
        raise ValueError(f"{path}: unknown image format (use .nii.gz, .nii, .nrrd, .mha or .png)")
    return path


def _nifti_array(array: npt.NDArray[np.generic]) -> npt.NDArray[np.generic]:
    """The array in a dtype NIfTI readers accept (no bool, float16 or 64-bit integers)."""
    if array.dtype == np.bool_:
        return array.astype(np.uint8)
    if array.dtype == np.float16:
        return array.astype(np.float32)
    if array.dtype in (np.int64, np.uint64):
        small = np.int32 if array.dtype == np.int64 else np.uint32
        if array.size and (array.min() < np.iinfo(small).min or array.max() > np.iinfo(small).max):
            raise ValueError(f"values outside the {np.dtype(small).name} range")
        return array.astype(small)
    return array


def _write_nifti(volume: Volume, path: Path) -> None:
    import nibabel as nib

    img = nib.Nifti1Image(_nifti_array(volume.array), volume.affine)
    img.set_qform(volume.affine, code=1)
    img.set_sform(volume.affine, code=1)
    img.header.set_xyzt_units("mm")
    nib.save(img, str(path))


def _write_png(array: npt.NDArray[np.generic], path: Path) -> None:
    from PIL import Image

    if array.ndim != 2:
        raise ValueError(f"{path}: PNG holds 2D images, got shape {array.shape}")
    if array.dtype == np.bool_:
        array = array.astype(np.uint8)
    if array.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"{path}: PNG holds uint8 or uint16 pixels, got {array.dtype}")
    Image.fromarray(np.ascontiguousarray(array)).save(path)


def _write_itk(volume: Volume, path: Path) -> None:
    sitk = _sitk()

    array = volume.array
    if array.dtype == np.bool_:
        array = array.astype(np.uint8)
    image = sitk.GetImageFromArray(
        np.ascontiguousarray(array.transpose(tuple(range(array.ndim))[::-1]))
    )
    dim = array.ndim
    lps = _LPS_TO_RAS @ volume.direction
    image.SetSpacing(volume.spacing[:dim])
    image.SetOrigin(tuple(float(x) for x in (_LPS_TO_RAS @ np.asarray(volume.origin))[:dim]))
    image.SetDirection(tuple(float(x) for x in lps[:dim, :dim].ravel()))
    sitk.WriteImage(image, str(path), useCompression=True)


def write_mask(mask: npt.NDArray[np.generic], reference: Volume, path: str | Path) -> Path:
    """Write a mask as uint8 with ``reference``'s geometry, so it overlays the CT in any viewer.

    A ``.png`` path writes a binary 2D mask as 0/255 (how 2D slice datasets store lesion masks).
    """
    mask = np.asarray(mask)
    if mask.shape != reference.shape:
        raise ValueError(f"{path}: mask shape {mask.shape} differs from image {reference.shape}")
    if image_suffix(path) == ".png":
        if not np.isin(mask, (0, 1)).all():
            raise ValueError(f"{path}: a PNG mask must be binary (0/1 or bool)")
        return write_volume(Volume((mask != 0).astype(np.uint8) * 255), path)
    return write_volume(Volume(mask.astype(np.uint8), reference.affine.copy()), path)
