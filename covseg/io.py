"""Read and write medical volumes without losing their geometry.

A :class:`Volume` is an array plus the affine that places each voxel in the world (RAS+, mm, the
NIfTI/nibabel convention). The array keeps the file's voxel index order (i, j, k); volumes read
with SimpleITK (NRRD, MHA, DICOM series), whose arrays come as (k, j, i), are transposed to match,
and their LPS geometry is converted to RAS+.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

#: File suffixes read with nibabel.
NIFTI_SUFFIXES = (".nii.gz", ".nii")
#: File suffixes read with SimpleITK.
ITK_SUFFIXES = (".nrrd", ".nhdr", ".mha", ".mhd")
#: RAS+ <-> LPS: flip the first two world axes.
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


class VolumeReadError(ValueError):
    """A file that is not a readable image volume (message names the file and the problem)."""


@dataclass(eq=False)
class Volume:
    """An image or mask with its geometry.

    Parameters
    ----------
    array
        Voxel values in the file's index order (i, j, k). CT in HU, masks as uint8/bool.
    affine
        4 x 4 matrix mapping voxel indices (i, j, k, 1) to RAS+ world coordinates in mm.

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


def _suffix(path: Path) -> str:
    name = path.name.lower()
    for suffix in NIFTI_SUFFIXES + ITK_SUFFIXES:
        if name.endswith(suffix):
            return suffix
    return path.suffix.lower()


def read_volume(path: str | Path) -> Volume:
    """Read a NIfTI file, an NRRD/MHA file, or a folder holding one DICOM series.

    Raises
    ------
    VolumeReadError
        When the path is missing, not an image, corrupt or truncated; the message names the file.
    """
    path = Path(path)
    if not path.exists():
        raise VolumeReadError(f"{path}: no such file or folder")
    try:
        if path.is_dir():
            return _read_dicom_series(path)
        if _suffix(path) in NIFTI_SUFFIXES:
            return _read_nifti(path)
        return _read_itk(path)
    except VolumeReadError:
        raise
    except Exception as exc:  # nibabel/SimpleITK/zlib raise many types for broken files
        raise VolumeReadError(
            f"{path}: cannot read image ({exc.__class__.__name__}: {exc})"
        ) from exc


def _read_nifti(path: Path) -> Volume:
    import nibabel as nib

    img = nib.load(str(path))
    array = np.asanyarray(img.dataobj)  # type: ignore[attr-defined]
    affine = img.affine  # type: ignore[attr-defined]
    if affine is None:
        raise VolumeReadError(f"{path}: no affine in header")
    return Volume(np.asarray(array), np.asarray(affine, dtype=np.float64))


def _itk_to_volume(image: object) -> Volume:
    import SimpleITK as sitk

    assert isinstance(image, sitk.Image)
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
    import SimpleITK as sitk

    return _itk_to_volume(sitk.ReadImage(str(path)))


def _read_dicom_series(folder: Path) -> Volume:
    import SimpleITK as sitk

    reader = sitk.ImageSeriesReader()
    series = reader.GetGDCMSeriesIDs(str(folder))
    if not series:
        raise VolumeReadError(f"{folder}: no DICOM series found")
    if len(series) > 1:
        raise VolumeReadError(f"{folder}: {len(series)} DICOM series found, expected one")
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder), series[0]))
    volume = _itk_to_volume(reader.Execute())
    # HU = stored * slope + intercept is applied by GDCM; keep integers compact when possible.
    return volume


def write_volume(volume: Volume, path: str | Path) -> Path:
    """Write a volume as NIfTI (``.nii``/``.nii.gz``) or NRRD/MHA, keeping its geometry exactly."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if _suffix(path) in NIFTI_SUFFIXES:
        import nibabel as nib

        img = nib.Nifti1Image(volume.array, volume.affine)
        img.set_qform(volume.affine, code=1)
        img.set_sform(volume.affine, code=1)
        nib.save(img, str(path))
    elif _suffix(path) in ITK_SUFFIXES:
        _write_itk(volume, path)
    else:
        raise ValueError(f"{path}: unknown image format (use .nii.gz, .nii, .nrrd or .mha)")
    return path


def _write_itk(volume: Volume, path: Path) -> None:
    import SimpleITK as sitk

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
    """Write a mask as uint8 with ``reference``'s geometry, so it overlays the CT in any viewer."""
    if mask.shape != reference.shape:
        raise ValueError(f"{path}: mask shape {mask.shape} differs from image {reference.shape}")
    return write_volume(Volume(np.asarray(mask).astype(np.uint8), reference.affine.copy()), path)
